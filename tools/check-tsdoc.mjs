#!/usr/bin/env node
// Lists every public export (what each package's `exports` map reaches) that has no TSDoc
// comment, or no `@example` in it, and exits 1 when there is one. Public means reachable by a
// consumer: the entry points' own exports and everything they re-export.
//
//   node tools/check-tsdoc.mjs [packages/core ...]
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import ts from 'typescript';

const ROOT = resolve(new URL('..', import.meta.url).pathname);

/** The source file behind each `types` target of a package's exports map. */
function entryPoints(pkgDir) {
  const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
  const entries = [];
  for (const [key, target] of Object.entries(pkg.exports ?? {})) {
    const types = typeof target === 'object' ? target.types : undefined;
    if (!types) continue;
    const src = types.replace(/^\.\/dist\//, 'src/').replace(/\.d\.ts$/, '.ts');
    entries.push({ subpath: `${pkg.name}${key === '.' ? '' : key.slice(1)}`, file: join(pkgDir, src) });
  }
  return entries;
}

/** The declaration's own TSDoc blocks (overloads and merged declarations each count). */
function docsOf(decl) {
  const node = ts.isVariableDeclaration(decl) ? decl.parent.parent : decl;
  return ts.getJSDocCommentsAndTags(node).filter(ts.isJSDoc);
}

function check(pkgDirs) {
  const entries = pkgDirs.flatMap(entryPoints);
  const program = ts.createProgram(
    entries.map((e) => e.file),
    {
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      target: ts.ScriptTarget.ES2022,
      noEmit: true,
      skipLibCheck: true,
    },
  );
  const checker = program.getTypeChecker();
  const missing = [];
  const seen = new Set();
  for (const { subpath, file } of entries) {
    const source = program.getSourceFile(file);
    const moduleSymbol = source && checker.getSymbolAtLocation(source);
    if (!moduleSymbol) {
      missing.push(`${subpath}: entry point ${relative(ROOT, file)} not found`);
      continue;
    }
    for (const exported of checker.getExportsOfModule(moduleSymbol)) {
      const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
      for (const decl of symbol.declarations ?? []) {
        const at = `${relative(ROOT, decl.getSourceFile().fileName)}:${decl.getSourceFile().getLineAndCharacterOfPosition(decl.getStart()).line + 1}`;
        if (seen.has(at)) continue;
        seen.add(at);
        // Declarations of dependencies (a type re-exported from another package) are theirs to document.
        if (/\/(node_modules|dist)\//.test(decl.getSourceFile().fileName)) continue;
        const docs = docsOf(decl);
        const name = `${subpath} ${exported.name} (${ts.SyntaxKind[decl.kind]})`;
        if (docs.length === 0) missing.push(`${at} ${name}: no TSDoc`);
        else if (!docs.some((d) => (d.tags ?? []).some((t) => t.tagName.text === 'example')))
          missing.push(`${at} ${name}: no @example`);
      }
    }
  }
  return missing;
}

const args = process.argv.slice(2);
const dirs = args.length
  ? args.map((a) => resolve(a))
  : readdirSync(join(ROOT, 'packages')).map((d) => join(ROOT, 'packages', d));
const missing = check(dirs);
for (const line of missing) console.log(line);
console.log(`tsdoc: ${missing.length} public export(s) without TSDoc and an @example`);
process.exitCode = missing.length ? 1 : 0;
