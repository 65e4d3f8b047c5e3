import type { Locator } from 'playwright-core';
import type { ExtractTableStep, StepOutput } from '@rpa/shared';
import type { z } from 'zod';
import type { StepContext } from './context.js';
import { toStepFailure } from './errors.js';
import { locate } from './locate.js';

// `:scope >` keeps cells of nested tables out of their parent's rows.
const CELLS = ':scope > th, :scope > td';
const BODY_ROWS = ':scope > tbody > tr, :scope > tr';

/**
 * Reads the first matching table: headers from its first thead row (or from a leading row of th cells when it has
 * no thead), and every other row as an array of cell texts. Only locator reads: nothing is evaluated in the page.
 */
export async function extractTable(
  step: z.infer<typeof ExtractTableStep>,
  ctx: StepContext,
): Promise<StepOutput> {
  const table = await locate(ctx, step.selector);
  try {
    const headRows = table.locator(':scope > thead > tr');
    const bodyRows = table.locator(BODY_ROWS);
    let headers: string[] = [];
    let firstBodyRow = 0;
    if ((await headRows.count()) > 0) {
      headers = await cellTexts(headRows.first());
    } else if ((await bodyRows.count()) > 0 && (await isHeaderRow(bodyRows.first()))) {
      headers = await cellTexts(bodyRows.first());
      firstBodyRow = 1;
    }
    const total = await bodyRows.count();
    const rows: string[][] = [];
    for (let i = firstBodyRow; i < total; i++) rows.push(await cellTexts(bodyRows.nth(i)));
    return { kind: 'table', headers, rows };
  } catch (error) {
    throw toStepFailure(error, 'act');
  }
}

async function cellTexts(row: Locator): Promise<string[]> {
  const texts = await row.locator(CELLS).allInnerTexts();
  return texts.map((t) => t.trim());
}

async function isHeaderRow(row: Locator): Promise<boolean> {
  return (await row.locator(':scope > td').count()) === 0 && (await row.locator(':scope > th').count()) > 0;
}
