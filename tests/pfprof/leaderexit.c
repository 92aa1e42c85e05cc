// SPDX-License-Identifier: GPL-2.0
/*
 * leaderexit - a registered process whose leader thread calls pthread_exit()
 * while its other threads keep running; run in the VM by
 * tests/test_pfprof_vm.py.
 *
 *   leaderexit [seconds]
 *
 * The child registers itself (getrusage just before and after the "R"),
 * starts two threads that fault and burn CPU for `seconds`, and its leader
 * calls pthread_exit(): a zombie leader with live threads, which pfprof must
 * not take for an exit. The process ends when the last thread returns. The
 * parent looks at it half-way (leader state in /proc/<pid>/stat, listed in
 * the status file?), reaps it with wait4() and prints one JSON line with
 * the CLOCK_MONOTONIC times of the leader's exit and of the threads' end.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define STATUS "/proc/pfprof/status"
#define THREADS 2

struct usage { long minflt, majflt; double cpu_s; };
struct report {
	struct usage before, after;
	uint64_t leader_exit_ns;
};

static double seconds;
static int pipe_w;

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static struct usage usage_of(struct rusage *r)
{
	struct usage u = { r->ru_minflt, r->ru_majflt,
		r->ru_utime.tv_sec + r->ru_stime.tv_sec +
		(r->ru_utime.tv_usec + r->ru_stime.tv_usec) / 1e6 };
	return u;
}

static struct usage self_usage(void)
{
	struct rusage r;

	getrusage(RUSAGE_SELF, &r);
	return usage_of(&r);
}

static void *worker(void *arg)
{
	uint64_t end = mono_ns() + (uint64_t)(seconds * 1e9), now;
	long page = sysconf(_SC_PAGESIZE);

	(void)arg;
	while (mono_ns() < end) {
		char *p = mmap(NULL, 64 * page, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			abort();
		for (int i = 0; i < 64; i++)
			p[i * page] = 1;
		munmap(p, 64 * page);
	}
	now = mono_ns();
	if (write(pipe_w, &now, sizeof(now)) != sizeof(now))
		abort();
	return NULL;
}

static void child(void)
{
	struct report rep;
	pthread_t t[THREADS];
	char cmd[32];
	int fd = open(STATUS, O_WRONLY);

	if (fd < 0)
		_exit(3);
	snprintf(cmd, sizeof(cmd), "R %d", getpid());
	rep.before = self_usage();
	if (write(fd, cmd, strlen(cmd)) < 0)
		_exit(4);
	rep.after = self_usage();
	for (int i = 0; i < THREADS; i++)
		if (pthread_create(&t[i], NULL, worker, NULL))
			_exit(5);
	rep.leader_exit_ns = mono_ns();
	if (write(pipe_w, &rep, sizeof(rep)) != sizeof(rep))
		_exit(6);
	pthread_exit(NULL);	/* the others go on; the last one ends the process */
}

static bool listed(pid_t pid)
{
	char line[256];
	bool found = false;
	FILE *f = fopen(STATUS, "r");

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (atoi(line) == pid)
			found = true;
	fclose(f);
	return found;
}

static char leader_state(pid_t pid)
{
	char path[64], buf[512], *p;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return '?';
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	p = strrchr(buf, ')');
	return p && p[1] ? p[2] : '?';
}

int main(int argc, char **argv)
{
	struct report rep;
	struct rusage ru;
	uint64_t end_ns = 0, e;
	int fds[2], status;
	bool mid_listed;
	char mid_state;
	pid_t pid;

	seconds = argc > 1 ? atof(argv[1]) : 2.0;
	if (pipe(fds))
		return 1;
	pipe_w = fds[1];
	pid = fork();
	if (pid == 0) {
		close(fds[0]);
		child();
	}
	close(fds[1]);
	if (read(fds[0], &rep, sizeof(rep)) != sizeof(rep))
		return 1;
	usleep((useconds_t)(seconds * 1e6 / 2));
	mid_state = leader_state(pid);
	mid_listed = listed(pid);
	for (int i = 0; i < THREADS; i++) {
		if (read(fds[0], &e, sizeof(e)) != sizeof(e))
			return 1;
		end_ns = e > end_ns ? e : end_ns;
	}
	if (wait4(pid, &status, 0, &ru) != pid)
		return 1;
	struct usage fin = usage_of(&ru);
	printf("{\"pid\": %d, \"exit_status\": %d, \"mid_state\": \"%c\", \"mid_listed\": %s, "
	       "\"leader_exit_ns\": %llu, \"threads_end_ns\": %llu, "
	       "\"minflt_before\": %ld, \"majflt_before\": %ld, \"cpu_before_s\": %.6f, "
	       "\"minflt_after\": %ld, \"majflt_after\": %ld, "
	       "\"minflt\": %ld, \"majflt\": %ld, \"cpu_s\": %.6f}\n",
	       pid, status, mid_state, mid_listed ? "true" : "false",
	       (unsigned long long)rep.leader_exit_ns, (unsigned long long)end_ns,
	       rep.before.minflt, rep.before.majflt, rep.before.cpu_s,
	       rep.after.minflt, rep.after.majflt, fin.minflt, fin.majflt, fin.cpu_s);
	return 0;
}
