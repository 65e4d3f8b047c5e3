export {
  startNatsServer,
  findNatsServerBinary,
  freePort,
  uniquePrefix,
  type NatsServerHandle,
} from './natsServer.js';
export { waitFor, WaitTimeoutError } from './waitFor.js';
export { startTestIssuer, testApiKey, type TestIssuer, type TestClaims } from './credentials.js';
export { auditRoutes, fillParams, routerRoutes, type RouterRoute } from './routes.js';
export { natsContents, type NatsContents } from './natsContents.js';
