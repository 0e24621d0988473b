export { AgentBinaryError, agentArchOf, agentBinaryPath } from './agent-binary.js';
export type { AgentErrorCode } from './agent-errors.js';
export { AgentError, AgentTransportError } from './agent-errors.js';
export type { AgentSessionOptions } from './agent-session.js';
export { AgentSession } from './agent-session.js';
export type {
  AgentExecRequest,
  AgentExit,
  AgentFileStat,
  AgentInfo,
  AgentProcess,
  AgentWriteOptions,
} from './agent-types.js';
export type { Frame, FrameSink, FrameTypeCode } from './frames.js';
export {
  encodeFrame,
  FrameDecoder,
  FrameType,
  HEADER_SIZE,
  INITIAL_WINDOW,
  MAX_PAYLOAD,
  PROTOCOL_VERSION,
  StreamId,
} from './frames.js';
