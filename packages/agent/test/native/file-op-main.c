/* Test driver: runs one file operation the way the agent's worker does, on fds 0, 1 and 3. */
#include <fcntl.h>
#include <stdio.h>

#include "../../native/agent.h"

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s OP [ARG...] (END payload on fd 3)\n", argv[0]);
    return 2;
  }
  if (fcntl(3, F_GETFD) < 0) {
    fprintf(stderr, "%s: fd 3 must be open for the END payload\n", argv[0]);
    return 2;
  }
  int streams = file_op_streams(argv[1]);
  run_file_op(argv[1], argv + 2, argc - 2, streams > 0 && (streams & OP_INPUT) ? 0 : -1,
              streams > 0 && (streams & OP_OUTPUT) ? 1 : -1, 3);
}
