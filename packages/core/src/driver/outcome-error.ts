import { type ErrorContext, ExecenvError, InvalidSpecError, NotFoundError, UnsafePathError } from '../errors.js';

/** The SDK's error for an agent outcome `error CODE MESSAGE` of `context.op` on `path` (see agentError). */
export function outcomeCodeError(
  code: string,
  message: string,
  context: ErrorContext & { op: string },
  path: string,
  field: string,
): ExecenvError {
  switch (code) {
    case 'NOT_FOUND':
      return new NotFoundError(path, context);
    case 'UNSAFE_PATH':
      return new UnsafePathError(path, message, context);
    case 'CONFLICT':
    case 'INVALID':
      return new InvalidSpecError(field, `${path}: ${message}`, context);
    default:
      return new ExecenvError(
        'EXEC_FAILED',
        `execenv: ${context.op} ${path} in ${context.envId} failed inside the environment: ${message}`,
        context,
      );
  }
}
