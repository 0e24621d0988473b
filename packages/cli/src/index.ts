/**
 * The `execenv` command line as a library: run it with other streams, or
 * reuse its settings, driver catalog and progress reporting.
 * @packageDocumentation
 */

export { runCli } from './cli.js';
export { errorLine, exitCodeOf, UsageError } from './cli-errors.js';
export { type CliIO, type InputStream, type OutputStream, processIO } from './cli-io.js';
export { CommandContext } from './command-context.js';
export { shellArgv } from './commands/shell.js';
export {
  type CliSettings,
  cliSettings,
  configFilePath,
  DEFAULT_DRIVER,
  readConfigFile,
  type Setting,
  type SettingSource,
} from './config.js';
export {
  type DriverReport,
  describeDriver,
  FIRST_PARTY_DRIVERS,
  installedThirdPartyDrivers,
  installHint,
  knownDriverNames,
  loadDriver,
} from './driver-catalog.js';
export { commandExitCode, EXIT, EXIT_CODES_HELP } from './exit-codes.js';
export { type EnvironmentFlags, type OpenedEnvironment, openEnvironment } from './opened-environment.js';
export { formatAge, formatBytes, formatTable, Output, type OutputOptions } from './output.js';
export { loadPlugins, type PluginLoad, pluginImportTarget } from './plugins.js';
export { createProgram } from './program.js';
export {
  createProgress,
  type ProgressMode,
  type ProgressReporter,
  progressMode,
  renderBar,
  shortReference,
  stepsOf,
} from './progress.js';
export { parseEnvPair, parsePull, parsePush, parseTimeoutSeconds, type Transfer } from './run-flags.js';
