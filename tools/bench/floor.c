/*
 * The floor of exec: fork, chroot into ROOT, exec PROGRAM, wait, N times.
 * Prints the median microseconds of one iteration. Built and run by run.mjs
 * so the agent's exec is measured against the cheapest way to run a command.
 * usage: floor ROOT PROGRAM N
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: floor ROOT PROGRAM N\n");
    return 2;
  }
  int n = atoi(argv[3]);
  double *us = calloc((size_t)n, sizeof *us);
  if (!us || n <= 0) return 2;
  for (int i = 0; i < n; i++) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    pid_t pid = fork();
    if (pid == 0) {
      if (chroot(argv[1]) != 0 || chdir("/") != 0) _exit(126);
      execl(argv[2], argv[2], (char *)NULL);
      _exit(127);
    }
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fprintf(stderr, "floor: run %d failed\n", i);
      return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    us[i] = (double)(b.tv_sec - a.tv_sec) * 1e6 + (double)(b.tv_nsec - a.tv_nsec) / 1e3;
  }
  qsort(us, (size_t)n, sizeof *us, by_value);
  printf("%.1f\n", n % 2 ? us[n / 2] : (us[n / 2 - 1] + us[n / 2]) / 2);
  return 0;
}
