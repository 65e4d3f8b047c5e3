import type { SessionState } from '@rpa/shared';

/** Each submitted step with its seq; a repeated keyed request answers what its first call submitted. */
export function submittedSteps(
  state: SessionState,
  steps: ReadonlyArray<{ stepId: string }>,
  key: string | undefined,
): Array<{ stepId: string; seq: number }> {
  if (state.status === 'none') return [];
  const first = key ? state.submissions[key] : undefined;
  if (first) return first.steps;
  return steps.flatMap(({ stepId }) => {
    const step = state.steps[stepId];
    return step ? [{ stepId, seq: step.seq }] : [];
  });
}
