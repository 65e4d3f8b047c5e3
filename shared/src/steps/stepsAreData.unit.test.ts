import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/**
 * Steps are data: nothing a caller sends is ever run as code, in this process or in a page. This test reads every
 * source file of the services and of shared and fails on anything that could evaluate a string: `eval`, the
 * Function constructor, the `vm` module, string timers, and Playwright's evaluation calls (`evaluate`,
 * `$eval`, `waitForFunction`, init scripts, …) unless the code they run is a function literal written here.
 * A function literal may still take data as its argument; that is how values reach a page, never as source.
 */

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

/** Playwright calls that run code in a page, and which argument is that code. */
const PAGE_CODE_ARGUMENT = new Map<string, number>([
  ['evaluate', 0],
  ['evaluateHandle', 0],
  ['evaluateAll', 0],
  ['waitForFunction', 0],
  ['addInitScript', 0],
  ['$eval', 1],
  ['$$eval', 1],
]);
/** Calls that take nothing but source (or a URL of it): never allowed. */
const ALWAYS_CODE = new Set([
  'addScriptTag',
  'compileFunction',
  'runInNewContext',
  'runInThisContext',
  'runInContext',
]);
const STRING_TIMERS = new Set(['setTimeout', 'setInterval', 'setImmediate']);

interface Finding {
  line: number;
  what: string;
}

function isFunctionLiteral(node: ts.Node | undefined): boolean {
  if (!node) return false;
  while (ts.isParenthesizedExpression(node) || ts.isAsExpression(node) || ts.isSatisfiesExpression(node))
    node = node.expression;
  return ts.isArrowFunction(node) || ts.isFunctionExpression(node);
}

function isStringLike(node: ts.Node | undefined): boolean {
  return (
    node !== undefined &&
    (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node) || ts.isTemplateExpression(node))
  );
}

function calleeName(expression: ts.Expression): string | null {
  if (ts.isIdentifier(expression)) return expression.text;
  if (ts.isPropertyAccessExpression(expression)) return expression.name.text;
  if (ts.isElementAccessExpression(expression) && ts.isStringLiteral(expression.argumentExpression))
    return expression.argumentExpression.text;
  return null;
}

/** Every construct in one file that could evaluate code not written as a function literal in this file. */
function findEvaluation(fileName: string, text: string): Finding[] {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true);
  const findings: Finding[] = [];
  const report = (node: ts.Node, what: string) =>
    findings.push({ line: source.getLineAndCharacterOfPosition(node.getStart()).line + 1, what });

  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) {
      const from = node.moduleSpecifier;
      if (from && ts.isStringLiteral(from) && (from.text === 'vm' || from.text === 'node:vm'))
        report(node, `imports ${from.text}`);
    }
    if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [from] = node.arguments;
      if (from && ts.isStringLiteral(from) && (from.text === 'vm' || from.text === 'node:vm'))
        report(node, `imports ${from.text}`);
    }
    if (ts.isNewExpression(node) && ts.isIdentifier(node.expression) && node.expression.text === 'Function')
      report(node, 'new Function');
    if (
      ts.isPropertyAccessExpression(node) &&
      ts.isIdentifier(node.expression) &&
      node.expression.text === 'vm'
    )
      report(node, `vm.${node.name.text}`);
    if (ts.isCallExpression(node)) {
      const name = calleeName(node.expression);
      if (name === 'eval') report(node, 'eval(…)');
      else if (name === 'Function' && ts.isIdentifier(node.expression)) report(node, 'Function(…)');
      else if (name === 'require') {
        const [from] = node.arguments;
        if (from && ts.isStringLiteral(from) && (from.text === 'vm' || from.text === 'node:vm'))
          report(node, `requires ${from.text}`);
      } else if (name !== null && ALWAYS_CODE.has(name)) report(node, `${name}(…)`);
      else if (name !== null && PAGE_CODE_ARGUMENT.has(name)) {
        const code = node.arguments[PAGE_CODE_ARGUMENT.get(name)!];
        if (!isFunctionLiteral(code)) report(node, `${name}(…) of something other than a function literal`);
      } else if (name !== null && STRING_TIMERS.has(name) && ts.isIdentifier(node.expression)) {
        const [first] = node.arguments;
        if (isStringLike(first)) report(node, `${name} with a string`);
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return findings;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir)) {
    if (entry === 'node_modules' || entry.startsWith('.')) continue;
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) out.push(...sourceFiles(path));
    else if (/\.(ts|mts|cts|js|mjs|cjs)$/.test(entry) && !/\.d\.ts$/.test(entry)) out.push(path);
  }
  return out;
}

function scannedFiles(): string[] {
  const roots = [join(repoRoot, 'shared/src')];
  for (const service of readdirSync(join(repoRoot, 'services'))) {
    const src = join(repoRoot, 'services', service, 'src');
    if (statSync(src, { throwIfNoEntry: false })?.isDirectory()) roots.push(src);
  }
  return roots.flatMap(sourceFiles);
}

describe('steps are data: no user-provided JavaScript is evaluated anywhere', () => {
  it('finds no eval, Function constructor, vm, string timer or page evaluation of anything but a function literal', () => {
    const files = scannedFiles();
    // The scan reaches the code that runs steps, so an empty or misdirected scan cannot pass.
    expect(files.some((f) => f.includes('services/robot/src/steps/'))).toBe(true);
    expect(files.length).toBeGreaterThan(100);
    const findings = files.flatMap((file) =>
      findEvaluation(file, readFileSync(file, 'utf8')).map(
        (f) => `${relative(repoRoot, file)}:${f.line} ${f.what}`,
      ),
    );
    expect(findings).toEqual([]);
  });

  it('flags each way of evaluating a string', () => {
    const bad = [
      'eval(userCode);',
      'globalThis.eval(code);',
      'const f = new Function("a", body);',
      'const g = Function(body);',
      "import vm from 'node:vm';",
      "import { runInNewContext } from 'vm';",
      "const m = await import('node:vm');",
      "const v = require('vm');",
      'vm.runInThisContext(code);',
      'setTimeout("doIt()", 10);',
      'setInterval(`tick(${n})`, 10);',
      'await page.evaluate(step.script);',
      "await page.evaluate('document.title');",
      'await page.evaluate(`return ${expr}`);',
      'await locator.evaluateAll(code, arg);',
      "await page.$eval('#a', code);",
      "await page.$$eval('a', (step as any).fn);",
      'await frame.evaluateHandle(script);',
      'await page.waitForFunction(condition);',
      'await context.addInitScript(source);',
      'await page.addScriptTag({ content: code });',
      'await page["evaluate"](code);',
    ];
    for (const snippet of bad) expect(findEvaluation('bad.ts', snippet), snippet).not.toEqual([]);
  });

  it('lets page code written here as a function literal through, with data as its argument', () => {
    const good = [
      'await page.evaluate(() => document.title);',
      'await page.evaluate((value) => window.scrollTo(0, value), step.offset);',
      'await locator.evaluate(async function (el) { return el.textContent; });',
      "await page.$eval('#a', (el) => el.id);",
      "await page.$$eval('a', ((els) => els.length) as never);",
      'await page.waitForFunction(() => document.readyState === "complete");',
      'setTimeout(() => done(), 10);',
      'setTimeout(handler, 10);',
      'const evaluation = { evaluate: 1 };',
      "const text = 'eval(x) and new Function in a string are not code';",
    ];
    for (const snippet of good) expect(findEvaluation('good.ts', snippet), snippet).toEqual([]);
  });
});
