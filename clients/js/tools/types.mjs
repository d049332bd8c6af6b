// Generates the .d.ts beside each module from its JSDoc:
// `tsc --declaration --allowJs --emitDeclarationOnly` on a copy of the modules (with the
// committed .d.ts beside them tsc would read those instead of the JSDoc).
// Usage: node tools/types.mjs [outdir]   (default: clients/js itself)
//        node tools/types.mjs --check    (type-check the modules: --checkJs --strict, no output)
import { execFileSync } from 'node:child_process'
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const check = process.argv[2] === '--check'
const outdir = resolve(check ? here : (process.argv[2] ?? here))
const tsc = join(here, 'node_modules', 'typescript', 'bin', 'tsc')
const modules = readdirSync(here)
  .filter(name => name.endsWith('.js'))
  .sort()
const flags = ['--target', 'es2022', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--lib', 'es2022,dom']
const mode = check
  ? ['--noEmit', '--allowJs', '--checkJs', '--strict']
  : ['--declaration', '--allowJs', '--emitDeclarationOnly']

const work = mkdtempSync(join(tmpdir(), 'openpanel-ws-types-'))
let failed = false
try {
  for (const name of modules) copyFileSync(join(here, name), join(work, name))
  try {
    execFileSync(process.execPath, [tsc, ...mode, ...flags, '--outDir', join(work, 'out'), ...modules], {
      cwd: work,
      stdio: 'inherit'
    })
  } catch {
    failed = true // tsc printed why
  }
  for (const name of check || failed ? [] : modules) {
    const dts = name.replace(/\.js$/, '.d.ts')
    const body = readFileSync(join(work, 'out', dts), 'utf8')
    writeFileSync(
      join(outdir, dts),
      `// Generated from the JSDoc of ${name} by tools/types.mjs (tsc); do not edit.\n${body}`
    )
  }
} finally {
  rmSync(work, { recursive: true, force: true })
}
process.exitCode = failed ? 1 : 0
