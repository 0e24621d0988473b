import { type Command, Option } from 'commander';

/** Adds `--quiet` and `--verbose`, which every command takes. */
export function withVerbosity(command: Command): Command {
  return command
    .addOption(new Option('-q, --quiet', 'print only results and errors').conflicts('verbose'))
    .option('-v, --verbose', 'also print each step (exec, copy, destroy) and details');
}

/** Adds `--json` to a listing command. */
export function withJson(command: Command): Command {
  return command.option('--json', 'print the result as JSON on stdout');
}

/** Formats examples for the end of a command's help. */
export function examples(...lines: string[]): string {
  return `\nExamples:\n${lines.map((l) => `  ${l}`).join('\n')}\n`;
}
