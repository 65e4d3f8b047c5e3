export {
  decide,
  MAX_STEPS_PER_SESSION,
  type Decision,
  type Rejection,
  type RejectionCode,
} from './decide.js';
export { evolve, FoldScope } from './evolve.js';
export {
  initialState,
  isTerminal,
  type Attention,
  type RestorePoint,
  type SessionState,
  type SessionStatus,
  type StepState,
  type StepStatus,
  type Owner,
} from './state.js';
