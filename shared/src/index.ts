export * from './errors.js';
export * from './steps/stepSpec.js';
export * from './events/sessionEvents.js';
export * from './events/codec.js';
export * from './commands/sessionCommands.js';
export * from './session/decider.js';
export * from './session/commandHandler.js';
export * from './eventStore/port.js';
export * from './eventStore/errors.js';
export { InMemoryEventStore } from './eventStore/memory.js';
export { validateAppend, isValidStreamId } from './eventStore/validation.js';
export * from './nats/connection.js';
export * from './nats/topology.js';
export * from './nats/messages.js';
export * from './readModel/sessionDocument.js';
export * from './config/env.js';
export * from './logging/logger.js';
export * from './metrics/metrics.js';
export * from './http/ops.js';
export * from './lifecycle.js';
export * from './service.js';
export * from './eventStore/factory.js';
export * from './http/errorHandler.js';
export * from './http/auth.js';
export * from './http/apiKeys.js';
export * from './http/jwt.js';
export * from './http/authConfig.js';
export * from './http/fastifyLogger.js';
export * from './http/apiServer.js';
export * from './readModel/sessionProjection.js';
export { JetStreamEventStore, type JetStreamEventStoreOptions } from './eventStore/jetstream.js';
// Types only: the KurrentDB client loads a native module, so it is imported (by openEventStore) only when selected.
export type {
  KurrentDbEventStore,
  KurrentDbEventStoreOptions,
  KurrentClientLike,
} from './eventStore/kurrentdb.js';
export * from './readModel/robotHeartbeat.js';
export { stateHash, NotHashableError } from './session/stateHash.js';
export * from './session/snapshot.js';
export { InMemorySnapshotStore } from './session/snapshotMemory.js';
export { NatsSnapshotStore } from './session/snapshotNats.js';
