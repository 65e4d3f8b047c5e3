import { eventStoreContract } from './contract.js';
import { InMemoryEventStore } from './memory.js';

eventStoreContract('InMemoryEventStore', async () => {
  const store = new InMemoryEventStore();
  return { store, dispose: () => store.close() };
});
