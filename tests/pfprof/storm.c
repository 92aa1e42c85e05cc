// SPDX-License-Identifier: GPL-2.0
/*
 * storm - register/unregister storm against /proc/pfprof/status, run in the
 * VM by tests/test_pfprof_vm.py while the module samples.
 *
 *   storm [threads] [children] [seconds]
 *
 * children processes fault on a small region and, with churn, exit after a
 * random lifetime and are replaced (exits race with the storm and with the
 * sampling work). threads threads write "R <pid>"/"U <pid>" for random
 * children as fast as they can; one more thread reads status and stats.
 * Expected errors are the races: EEXIST, ENOENT, ESRCH. Anything else is
 * counted in "errors". Prints one JSON line; exit 1 if errors.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define STATUS "/proc/pfprof/status"
#define MAX_CHILDREN 256

static pid_t children[MAX_CHILDREN];
static int nchildren;
static volatile int stop;
static long ops, ok, eexist, enoent, esrch, errors, status_reads;
static int last_error;

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A child: fault on a 2 MiB region with short sleeps, for lifetime_ms. */
static void child_main(unsigned int seed, long lifetime_ms)
{
	size_t size = 2 << 20, page = 4096;
	volatile char *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t s = seed | 1;
	double end = now_s() + lifetime_ms / 1e3;

	if (p == MAP_FAILED)
		_exit(1);
	while (now_s() < end) {
		struct timespec ms = { 0, 1000000 };

		for (int i = 0; i < 64; i++)
			p[(rnd(&s) % (size / page)) * page] = 1;
		if (rnd(&s) % 8 == 0)	/* give pages back: new minor faults later */
			madvise((void *)p, size, MADV_DONTNEED);
		nanosleep(&ms, NULL);
	}
	_exit(0);
}

static pid_t spawn(unsigned int seed, int churn)
{
	pid_t pid = fork();

	if (pid == 0)
		child_main(seed, churn ? 100 + seed % 1500 : 1000000000L);
	return pid;
}

static void *storm_thread(void *arg)
{
	uint64_t s = (uintptr_t)arg * 2654435761u + 1;
	int fd = open(STATUS, O_WRONLY);

	if (fd < 0) {
		__atomic_add_fetch(&errors, 1, __ATOMIC_RELAXED);
		return NULL;
	}
	while (!stop) {
		char buf[32];
		pid_t pid = __atomic_load_n(&children[rnd(&s) % nchildren], __ATOMIC_RELAXED);
		int len = snprintf(buf, sizeof(buf), "%c %d\n", rnd(&s) & 1 ? 'R' : 'U', (int)pid);
		ssize_t n = write(fd, buf, len);
		int e = n < 0 ? errno : 0;

		__atomic_add_fetch(&ops, 1, __ATOMIC_RELAXED);
		if (n == len)
			__atomic_add_fetch(&ok, 1, __ATOMIC_RELAXED);
		else if (e == EEXIST)
			__atomic_add_fetch(&eexist, 1, __ATOMIC_RELAXED);
		else if (e == ENOENT)
			__atomic_add_fetch(&enoent, 1, __ATOMIC_RELAXED);
		else if (e == ESRCH)
			__atomic_add_fetch(&esrch, 1, __ATOMIC_RELAXED);
		else {
			__atomic_add_fetch(&errors, 1, __ATOMIC_RELAXED);
			last_error = e;
		}
	}
	close(fd);
	return NULL;
}

static void *reader_thread(void *arg)
{
	static const char *files[] = { STATUS, "/proc/pfprof/stats" };
	char buf[65536];

	(void)arg;
	while (!stop) {
		for (int i = 0; i < 2; i++) {
			int fd = open(files[i], O_RDONLY);

			if (fd < 0 || read(fd, buf, sizeof(buf)) <= 0)
				__atomic_add_fetch(&errors, 1, __ATOMIC_RELAXED);
			if (fd >= 0)
				close(fd);
		}
		__atomic_add_fetch(&status_reads, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int nthreads = argc > 1 ? atoi(argv[1]) : 8;
	double seconds = argc > 3 ? atof(argv[3]) : 10;
	pthread_t threads[64], reader;
	long respawns = 0;
	double end;
	int fd;

	nchildren = argc > 2 ? atoi(argv[2]) : 16;
	if (nthreads < 1 || nthreads > 64 || nchildren < 1 || nchildren > MAX_CHILDREN) {
		fprintf(stderr, "usage: storm [threads 1-64] [children 1-%d] [seconds]\n", MAX_CHILDREN);
		return 2;
	}
	for (int i = 0; i < nchildren; i++)
		children[i] = spawn(i + 1, i % 2);	/* half of them churn */
	for (int i = 0; i < nthreads; i++)
		pthread_create(&threads[i], NULL, storm_thread, (void *)(uintptr_t)(i + 1));
	pthread_create(&reader, NULL, reader_thread, NULL);

	end = now_s() + seconds;
	while (now_s() < end) {
		struct timespec ms = { 0, 2000000 };
		int status;
		pid_t pid;

		while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
			for (int i = 0; i < nchildren; i++)
				if (children[i] == pid) {
					__atomic_store_n(&children[i], spawn(1000 + respawns, 1),
							 __ATOMIC_RELAXED);
					respawns++;
				}
		}
		nanosleep(&ms, NULL);
	}
	stop = 1;
	for (int i = 0; i < nthreads; i++)
		pthread_join(threads[i], NULL);
	pthread_join(reader, NULL);

	/* Leave nothing registered: unregister, then end the children. */
	fd = open(STATUS, O_WRONLY);
	for (int i = 0; i < nchildren; i++) {
		char buf[32];
		int len = snprintf(buf, sizeof(buf), "U %d", (int)children[i]);

		if (fd >= 0 && write(fd, buf, len) < 0 && errno != ENOENT && errno != ESRCH)
			errors++;
		kill(children[i], SIGKILL);
	}
	if (fd >= 0)
		close(fd);
	while (wait(NULL) > 0)
		;
	printf("{\"ops\": %ld, \"ok\": %ld, \"eexist\": %ld, \"enoent\": %ld, \"esrch\": %ld, "
	       "\"errors\": %ld, \"last_error\": \"%s\", \"respawns\": %ld, \"status_reads\": %ld}\n",
	       ops, ok, eexist, enoent, esrch, errors, last_error ? strerror(last_error) : "",
	       respawns, status_reads);
	return errors ? 1 : 0;
}
