export {
  startNatsServer,
  findNatsServerBinary,
  freePort,
  uniquePrefix,
  type NatsServerHandle,
} from './natsServer.js';
export { waitFor, WaitTimeoutError } from './waitFor.js';
