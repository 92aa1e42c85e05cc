// SPDX-License-Identifier: GPL-2.0
/*
 * work - the memory workload of the thrashlab case studies.
 *
 *   work [options] <MB> <R|L> <accesses per iteration> [iterations]
 *
 * Registers itself with pfprof (writes "R <pid>" to /proc/pfprof/status),
 * maps MB MiB of anonymous memory, touches every page once (fill phase),
 * then runs the timed phase: iterations of random writes, R uniformly over
 * the region, L with locality (most writes land near the previous one).
 * At the end it unregisters and prints one JSON line on stdout; see
 * usage() and workloads/README.md for the options and keys.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <linux/futex.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define STATUS_PATH "/proc/pfprof/status"
#define EXIT_USAGE 2
#define EXIT_BARRIER_TIMEOUT 3
#define CHECK_EVERY 1024	/* accesses between checks of the clock and of signals */

static volatile sig_atomic_t stop_signal;

/* Registered with pfprof: unregister on every exit path (atexit). */
static const char *registered_status;
static pid_t registered_pid;

/*
 * What the fill writes, so that a compressing swap (zram, zswap) sees data
 * of a known kind: random bytes (incompressible, the default), zero pages
 * (a compressor's best case), or words (text-like, about 2.5:1).
 */
enum fill_data { FILL_RANDOM, FILL_ZERO, FILL_TEXT };
static const char *const fill_data_names[] = { "random", "zero", "text" };

struct options {
	long mb;
	char mode;
	long per_iteration;
	long iterations;		/* -1: not given */
	bool do_register;
	const char *status_path;
	double seconds;			/* 0: bounded by iterations only */
	const char *barrier_path;
	long barrier_n;
	double barrier_timeout;
	long sleep_ms;			/* -1: default */
	uint64_t seed;
	bool seed_given;
	bool fill;
	enum fill_data fill_data;
	bool hold;
	bool thp;
	double locality;
	long window;
};

static void usage(FILE *f)
{
	fprintf(f,
"usage: work [options] <MB> <R|L> <accesses per iteration> [iterations]\n"
"  MB                     size of the region (MiB)\n"
"  R | L                  R: uniformly random writes; L: locality (see --locality)\n"
"  accesses per iteration writes per iteration of the timed phase\n"
"  iterations             default 20 (the course's); with --seconds, a cap\n"
"options:\n"
"  --seconds S            end the timed phase after S seconds (iterations repeat)\n"
"  --sleep-ms MS          pause after each iteration (default 1000 like the course's\n"
"                         sleep(1); 0 when --seconds is given)\n"
"  --barrier PATH N       after the fill, wait until N processes reached PATH\n"
"                         (a counter in a shared file; PATH must be new or zeroed)\n"
"  --barrier-timeout S    give up waiting after S seconds (default 600, exit 3)\n"
"  --no-register          run without pfprof\n"
"  --status PATH          registration file (default " STATUS_PATH ")\n"
"  --no-fill              skip the fill phase (first touches happen in the timed phase)\n"
"  --fill DATA            what the fill writes: random (default; incompressible),\n"
"                         zero (zero pages) or text (words; about 2.5:1 with lz4)\n"
"  --seed N               PRNG seed (default from pid and time)\n"
"  --locality P           L mode: share of local accesses (default 0.8)\n"
"  --window PAGES         L mode: local accesses within +-PAGES (default 4)\n"
"  --thp                  allow transparent huge pages (default: MADV_NOHUGEPAGE,\n"
"                         so that one first touch is one 4 KiB page fault)\n"
"  --hold                 at the end of the run, say so on stderr and sleep until\n"
"                         SIGUSR1/SIGTERM/SIGINT, then read the counters, unregister\n"
"                         and print (tests compare counters while it sleeps)\n"
"SIGTERM/SIGINT end the run early: JSON with \"interrupted\": true, exit 0.\n");
}

static void die(const char *fmt, const char *arg)
{
	fprintf(stderr, "work: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	exit(1);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* xorshift64*: fast, good enough for picking pages. */
static inline uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* A value in [0, n) from a 64-bit random number (multiply-high, no modulo bias worth noting). */
static inline uint64_t rng_below(uint64_t r, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)r * n) >> 64);
}

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9E3779B97F4A7C15ULL;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
	return x ^ (x >> 31);
}

static void on_stop(int sig)
{
	stop_signal = sig;
}

static volatile sig_atomic_t usr1_seen;

static void on_usr1(int sig)
{
	(void)sig;
	usr1_seen = 1;
}

/*
 * Write "R <pid>" or "U <pid>" to the status file. With ru_before/ru_after,
 * getrusage() is read right around the write() alone (after open and
 * formatting), so that the module's baseline lies between the two.
 */
static int status_command_ru(const char *path, char cmd, pid_t pid,
			     struct rusage *ru_before, struct rusage *ru_after)
{
	char buf[32];
	int fd, len, err = 0;
	ssize_t n;

	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	len = snprintf(buf, sizeof(buf), "%c %d\n", cmd, (int)pid);
	if (ru_before)
		getrusage(RUSAGE_SELF, ru_before);
	n = write(fd, buf, (size_t)len);
	if (n < 0)
		err = -errno;
	if (ru_after)
		getrusage(RUSAGE_SELF, ru_after);
	if (n >= 0 && n != len)
		err = -EIO;
	close(fd);
	return err;
}

static int status_command(const char *path, char cmd, pid_t pid)
{
	return status_command_ru(path, cmd, pid, NULL, NULL);
}

static void unregister_self(void)
{
	int err;

	if (!registered_status)
		return;
	err = status_command(registered_status, 'U', registered_pid);
	registered_status = NULL;
	if (err && err != -ENOENT)	/* ENOENT: someone unregistered us already */
		fprintf(stderr, "work: cannot unregister pid %d: %s\n", (int)registered_pid,
			strerror(-err));
}

static double tv_s(struct timeval tv)
{
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static bool parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

static bool parse_double(const char *s, double min, double max, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= min && v <= max))
		return false;
	*out = v;
	return true;
}

static void bad_arg(const char *what, const char *value)
{
	fprintf(stderr, "work: invalid %s: '%s'\n", what, value);
	usage(stderr);
	exit(EXIT_USAGE);
}

static void parse_options(int argc, char **argv, struct options *o)
{
	enum { OPT_SECONDS = 256, OPT_SLEEP, OPT_BARRIER, OPT_BARRIER_TIMEOUT, OPT_NO_REGISTER,
	       OPT_STATUS, OPT_NO_FILL, OPT_FILL, OPT_SEED, OPT_LOCALITY, OPT_WINDOW, OPT_THP,
	       OPT_HOLD };
	static const struct option longopts[] = {
		{ "seconds", required_argument, NULL, OPT_SECONDS },
		{ "sleep-ms", required_argument, NULL, OPT_SLEEP },
		{ "barrier", required_argument, NULL, OPT_BARRIER },
		{ "barrier-timeout", required_argument, NULL, OPT_BARRIER_TIMEOUT },
		{ "no-register", no_argument, NULL, OPT_NO_REGISTER },
		{ "status", required_argument, NULL, OPT_STATUS },
		{ "no-fill", no_argument, NULL, OPT_NO_FILL },
		{ "fill", required_argument, NULL, OPT_FILL },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "locality", required_argument, NULL, OPT_LOCALITY },
		{ "window", required_argument, NULL, OPT_WINDOW },
		{ "thp", no_argument, NULL, OPT_THP },
		{ "hold", no_argument, NULL, OPT_HOLD },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c, npos;
	char *end;

	*o = (struct options){ .iterations = -1, .do_register = true, .status_path = STATUS_PATH,
			       .barrier_timeout = 600, .sleep_ms = -1, .fill = true,
			       .locality = 0.8, .window = 4 };
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_SECONDS:
			if (!parse_double(optarg, 1e-3, 1e7, &o->seconds))
				bad_arg("--seconds", optarg);
			break;
		case OPT_SLEEP:
			if (!parse_long(optarg, 0, 3600000, &o->sleep_ms))
				bad_arg("--sleep-ms", optarg);
			break;
		case OPT_BARRIER:
			/* two arguments: PATH N */
			if (optind >= argc || !parse_long(argv[optind], 1, 1000000, &o->barrier_n))
				bad_arg("--barrier (PATH N)", optind < argc ? argv[optind] : "");
			o->barrier_path = optarg;
			optind++;
			break;
		case OPT_BARRIER_TIMEOUT:
			if (!parse_double(optarg, 0, 1e7, &o->barrier_timeout))
				bad_arg("--barrier-timeout", optarg);
			break;
		case OPT_NO_REGISTER:
			o->do_register = false;
			break;
		case OPT_STATUS:
			o->status_path = optarg;
			break;
		case OPT_NO_FILL:
			o->fill = false;
			break;
		case OPT_FILL: {
			size_t k;

			for (k = 0; k < sizeof(fill_data_names) / sizeof(fill_data_names[0]); k++)
				if (strcmp(optarg, fill_data_names[k]) == 0)
					break;
			if (k == sizeof(fill_data_names) / sizeof(fill_data_names[0]))
				bad_arg("--fill (random, zero or text)", optarg);
			o->fill_data = (enum fill_data)k;
			break;
		}
		case OPT_SEED:
			errno = 0;
			o->seed = strtoull(optarg, &end, 0);
			if (errno || end == optarg || *end)
				bad_arg("--seed", optarg);
			o->seed_given = true;
			break;
		case OPT_LOCALITY:
			if (!parse_double(optarg, 0, 1, &o->locality))
				bad_arg("--locality", optarg);
			break;
		case OPT_WINDOW:
			if (!parse_long(optarg, 0, 1L << 30, &o->window))
				bad_arg("--window", optarg);
			break;
		case OPT_THP:
			o->thp = true;
			break;
		case OPT_HOLD:
			o->hold = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(EXIT_USAGE);
		}
	}
	npos = argc - optind;
	if (npos < 3 || npos > 4) {
		fprintf(stderr, "work: expected 3 or 4 arguments, got %d\n", npos);
		usage(stderr);
		exit(EXIT_USAGE);
	}
	if (!parse_long(argv[optind], 1, 1L << 30, &o->mb))
		bad_arg("MB", argv[optind]);
	if (strcmp(argv[optind + 1], "R") && strcmp(argv[optind + 1], "L"))
		bad_arg("mode (R or L)", argv[optind + 1]);
	o->mode = argv[optind + 1][0];
	if (!parse_long(argv[optind + 2], 0, LONG_MAX, &o->per_iteration))
		bad_arg("accesses per iteration", argv[optind + 2]);
	if (npos == 4 && !parse_long(argv[optind + 3], 0, LONG_MAX, &o->iterations))
		bad_arg("iterations", argv[optind + 3]);
	if (o->iterations < 0 && o->seconds == 0)
		o->iterations = 20;
	if (o->sleep_ms < 0)
		o->sleep_ms = o->seconds > 0 ? 0 : 1000;
}

/*
 * Shared (not private) futex calls on the barrier's counter: the mapping is
 * MAP_SHARED, so the kernel keys the futex on the file and every process
 * that maps it meets on the same wait queue.
 */
static void futex_wait_ms(uint32_t *addr, uint32_t seen, long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	syscall(SYS_futex, addr, FUTEX_WAIT, seen, &ts, NULL, 0);
}

static void futex_wake_all(uint32_t *addr)
{
	syscall(SYS_futex, addr, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/*
 * Wait until n processes arrived: a 32-bit counter at the start of a shared
 * file, incremented atomically through a MAP_SHARED mapping. Extending the
 * file to its size is idempotent, so concurrent first users are safe.
 * Waiters sleep on a futex (dozens of processes polling every millisecond
 * would eat an emulated CPU); the last arrival, or whoever raises the count
 * from outside (the runner of the benchmarks), wakes them. The timed wait is
 * a safety net against a missed wake and checks the deadline and signals.
 * Returns 0, or -1 on timeout (message printed).
 */
static int barrier_wait(const char *path, long n, double timeout_s)
{
	const size_t size = 64;
	uint32_t *counter, arrived;
	struct stat st;
	uint64_t deadline = mono_ns() + (uint64_t)(timeout_s * 1e9);
	int fd;

	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
	if (fd < 0)
		die("cannot open barrier file %s", path);
	if (fstat(fd, &st) < 0 || (st.st_size < (off_t)size && ftruncate(fd, (off_t)size) < 0))
		die("cannot size barrier file %s", path);
	counter = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (counter == MAP_FAILED)
		die("cannot map barrier file %s", path);
	close(fd);

	arrived = __atomic_add_fetch(counter, 1, __ATOMIC_SEQ_CST);
	if (arrived > (uint32_t)n) {
		fprintf(stderr, "work: barrier %s: %u arrivals for N=%ld (file reused?)\n",
			path, arrived, n);
		exit(1);
	}
	if (arrived == (uint32_t)n)
		futex_wake_all(counter);
	for (;;) {
		uint32_t seen = __atomic_load_n(counter, __ATOMIC_ACQUIRE);

		if (seen >= (uint32_t)n || stop_signal)
			break;
		if (mono_ns() > deadline) {
			fprintf(stderr, "work: barrier %s: timeout after %.0f s (%u of %ld arrived)\n",
				path, timeout_s, seen, n);
			munmap(counter, size);
			return -1;
		}
		futex_wait_ms(counter, seen, 100);
	}
	munmap(counter, size);
	return 0;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	/* a stop signal interrupts the sleep (no SA_RESTART) */
	while (!stop_signal && nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* The first touch of one page: every byte of it written (one fault). */
static void fill_page(unsigned char *p, size_t size, enum fill_data data, uint64_t *rng)
{
	/*
	 * 32 words of 8 bytes (a power of two: 5 bits pick one; one store each):
	 * text-like data: a page compresses about 2.5:1 with lz4, 5:1 with zlib
	 */
	static const char words[32][9] = {
		"the     ", "page    ", "fault   ", "memory  ", "of the  ", "a       ", "process ", "kernel  ",
		"swap    ", "and     ", "to      ", "is      ", "in      ", "working ", "set     ", "thrash  ",
		"when    ", "it      ", "time    ", "reclaim ", "list    ", "virtual ", "frame   ", "disk    ",
		"for     ", "each    ", "one     ", "more    ", "than    ", "free    ", "out     ", "back    ",
	};
	size_t i = 0;

	switch (data) {
	case FILL_ZERO:
		memset(p, 0, size);	/* a write still allocates the page */
		break;
	case FILL_RANDOM:
		for (; i + sizeof(uint64_t) <= size; i += sizeof(uint64_t)) {
			uint64_t r = rng_next(rng);

			memcpy(p + i, &r, sizeof(r));
		}
		break;
	case FILL_TEXT:
		while (i + 8 <= size) {
			uint64_t r = rng_next(rng);

			for (int k = 0; k < 12 && i + 8 <= size; k++, r >>= 5, i += 8)
				memcpy(p + i, words[r & 31], 8);
		}
		break;
	}
}

/* What the JSON line reports, besides the options. */
struct result {
	pid_t pid;
	bool registered, interrupted;
	struct rusage ru_before, ru_after;	/* around the registration write */
	struct rusage ru_start, ru_end;		/* timed phase; ru_end is at exit */
	struct rusage ru_unregistered;		/* right after the "U <pid>" write */
	uint64_t fill_ns, barrier_ns, t0, t1, accesses;
	long iterations;
	size_t pages, page;
};

static size_t format_json(char *buf, size_t size, const struct options *o, const struct result *r)
{
	double secs = (double)(r->t1 - r->t0) / 1e9;
	int n;

	n = snprintf(buf, size,
		"{\"pid\": %d, \"mb\": %ld, \"mode\": \"%c\", \"accesses_per_iteration\": %ld, "
		"\"iterations\": %ld, \"iterations_requested\": %ld, "
		"\"accesses\": %" PRIu64 ", \"seconds\": %.9f, \"accesses_per_s\": %.3f, "
		"\"seconds_limit\": %.3f, \"fill\": %s, \"fill_data\": \"%s\", \"fill_s\": %.9f, "
		"\"barrier_wait_s\": %.9f, "
		"\"start_mono_ns\": %" PRIu64 ", \"end_mono_ns\": %" PRIu64 ", "
		"\"minflt\": %ld, \"majflt\": %ld, \"utime_s\": %.6f, \"stime_s\": %.6f, "
		"\"minflt_timed\": %ld, \"majflt_timed\": %ld, "
		"\"registered\": %s, \"minflt_before_register\": %ld, \"majflt_before_register\": %ld, "
		"\"minflt_after_register\": %ld, \"majflt_after_register\": %ld, "
		"\"cpu_before_register_s\": %.6f, "
		"\"minflt_at_unregister\": %ld, \"majflt_at_unregister\": %ld, \"cpu_at_unregister_s\": %.6f, "
		"\"pages\": %zu, \"page_size\": %zu, \"seed\": %" PRIu64 ", \"locality\": %.3f, "
		"\"window_pages\": %ld, \"sleep_ms\": %ld, \"interrupted\": %s}\n",
		(int)r->pid, o->mb, o->mode, o->per_iteration, r->iterations, o->iterations,
		r->accesses, secs, secs > 0 ? (double)r->accesses / secs : 0.0,
		o->seconds, o->fill ? "true" : "false", fill_data_names[o->fill_data],
		(double)r->fill_ns / 1e9,
		(double)r->barrier_ns / 1e9, r->t0, r->t1,
		r->ru_end.ru_minflt, r->ru_end.ru_majflt,
		tv_s(r->ru_end.ru_utime), tv_s(r->ru_end.ru_stime),
		r->ru_end.ru_minflt - r->ru_start.ru_minflt, r->ru_end.ru_majflt - r->ru_start.ru_majflt,
		r->registered ? "true" : "false", r->ru_before.ru_minflt, r->ru_before.ru_majflt,
		r->ru_after.ru_minflt, r->ru_after.ru_majflt,
		tv_s(r->ru_before.ru_utime) + tv_s(r->ru_before.ru_stime),
		r->ru_unregistered.ru_minflt, r->ru_unregistered.ru_majflt,
		tv_s(r->ru_unregistered.ru_utime) + tv_s(r->ru_unregistered.ru_stime),
		r->pages, r->page, o->seed, o->locality, o->window, o->sleep_ms,
		r->interrupted ? "true" : "false");
	return n < 0 ? 0 : (size_t)n < size ? (size_t)n : size - 1;
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Say "holding", then wait for SIGUSR1, SIGTERM or SIGINT. The signals are
 * blocked before the line is written, so one sent as soon as it is read
 * stays pending until sigsuspend() instead of being lost.
 */
static void hold(pid_t pid)
{
	sigset_t block, old, wait;

	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, &old);
	fprintf(stderr, "work: pid %d holding, SIGUSR1 finishes\n", (int)pid);
	wait = old;
	sigdelset(&wait, SIGUSR1);
	sigdelset(&wait, SIGTERM);
	sigdelset(&wait, SIGINT);
	while (!stop_signal && !usr1_seen)
		sigsuspend(&wait);
	sigprocmask(SIG_SETMASK, &old, NULL);
}

int main(int argc, char **argv)
{
	static char json[4096];
	struct options o;
	struct result res = { 0 };
	struct sigaction sa = { 0 };
	volatile unsigned char *region;
	size_t page, bytes, pages, len;
	uint64_t rng, t_fill0, deadline = 0, prev_page = 0, local_threshold;
	bool time_up = false;
	int err;

	parse_options(argc, argv, &o);
	memset(json, ' ', sizeof(json));	/* fault the buffer in now */

	sa.sa_handler = on_stop;	/* no SA_RESTART: sleeps end early */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);

	res.pid = getpid();
	res.page = page = (size_t)sysconf(_SC_PAGESIZE);
	bytes = (size_t)o.mb << 20;
	res.pages = pages = bytes / page;
	rng = o.seed_given ? o.seed : splitmix64((uint64_t)res.pid << 32 ^ mono_ns());
	if (!o.seed_given)
		o.seed = rng;
	rng = splitmix64(rng) | 1;	/* xorshift state must not be 0 */
	local_threshold = o.locality >= 1.0 ? UINT64_MAX :
			  (uint64_t)(o.locality * 18446744073709551615.0);

	if (o.do_register) {
		err = status_command_ru(o.status_path, 'R', res.pid, &res.ru_before, &res.ru_after);
		if (err) {
			fprintf(stderr, "work: cannot register pid %d with %s: %s%s\n", (int)res.pid,
				o.status_path, strerror(-err),
				err == -ENOENT ? " (is pfprof loaded? --no-register runs without it)" : "");
			return 1;
		}
		res.registered = true;
		registered_status = o.status_path;
		registered_pid = res.pid;
		atexit(unregister_self);
	}

	region = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED) {
		perror("work: mmap");
		return 1;
	}
	if (!o.thp)
		madvise((void *)region, bytes, MADV_NOHUGEPAGE);

	t_fill0 = mono_ns();
	if (o.fill)
		for (size_t p = 0; p < pages && !stop_signal; p++)
			/* not volatile here: the stores are kept, the region escapes to the kernel */
			fill_page((unsigned char *)region + p * page, page, o.fill_data, &rng);
	res.fill_ns = mono_ns() - t_fill0;

	if (o.barrier_path && !stop_signal) {
		uint64_t b0 = mono_ns();

		if (barrier_wait(o.barrier_path, o.barrier_n, o.barrier_timeout) < 0)
			return EXIT_BARRIER_TIMEOUT;
		res.barrier_ns = mono_ns() - b0;
	}

	getrusage(RUSAGE_SELF, &res.ru_start);
	res.t0 = mono_ns();
	if (o.seconds > 0)
		deadline = res.t0 + (uint64_t)(o.seconds * 1e9);
	while (!stop_signal && !time_up && (o.iterations < 0 || res.iterations < o.iterations)) {
		long i;

		for (i = 0; i < o.per_iteration; i++) {
			size_t pg;
			uint64_t r = rng_next(&rng);

			if ((i & (CHECK_EVERY - 1)) == CHECK_EVERY - 1) {
				if (stop_signal)
					break;
				if (deadline && mono_ns() >= deadline) {
					time_up = true;
					break;
				}
			}
			if (o.mode == 'R') {
				pg = rng_below(r, pages);
			} else if (rng_next(&rng) <= local_threshold) {
				/* near the previous page, reflected at the ends */
				int64_t d = (int64_t)rng_below(r, 2 * (uint64_t)o.window + 1) - o.window;
				int64_t q = (int64_t)prev_page + d;

				if (q < 0)
					q = -q;
				if (q >= (int64_t)pages)
					q = 2 * ((int64_t)pages - 1) - q;
				if (q < 0)	/* window wider than the region */
					q = 0;
				pg = (size_t)q;
			} else {
				pg = rng_below(r, pages);
			}
			/*
			 * A pure store to a byte chosen by the low bits of r (page is a power
			 * of 2): a read-modify-write would fault twice on a new page (zero
			 * page on the read, copy on the write).
			 */
			region[pg * page + (r & (page - 1))] = (unsigned char)r;
			prev_page = pg;
			res.accesses++;
		}
		if (i == o.per_iteration)
			res.iterations++;
		if (deadline && mono_ns() >= deadline)
			time_up = true;
		if (o.sleep_ms > 0 && !stop_signal && !time_up &&
		    (o.iterations < 0 || res.iterations < o.iterations))
			sleep_ms(o.sleep_ms);
	}
	res.t1 = mono_ns();
	res.interrupted = stop_signal != 0;

	/*
	 * The counters at exit, with nothing faulting after they are read: format
	 * the line once to fault in the code it runs, read the counters, then
	 * unregister (the module's last sample) and format the line for real.
	 * So the module's records sum exactly to minflt - minflt_after_register,
	 * unless the process faults or runs between that read and the module's
	 * last sample (under thrashing, a swapped-out page of this very code, with
	 * direct reclaim charged to it): the counters read again after the "U"
	 * write (*_at_unregister) bound the records from above.
	 */
	getrusage(RUSAGE_SELF, &res.ru_end);
	format_json(json, sizeof(json), &o, &res);
	if (o.hold) {
		/* Asleep, nothing of the process changes while a test reads it. */
		hold(res.pid);
	}
	getrusage(RUSAGE_SELF, &res.ru_end);
	unregister_self();
	getrusage(RUSAGE_SELF, &res.ru_unregistered);
	len = format_json(json, sizeof(json), &o, &res);
	if (write_all(STDOUT_FILENO, json, len) < 0) {
		perror("work: stdout");
		return 1;
	}
	return 0;
}
