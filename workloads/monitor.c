// SPDX-License-Identifier: GPL-2.0
/*
 * monitor - stream pfprof's records from /dev/pfprof to CSV.
 *
 *   monitor [-o FILE] [--format csv|mp3] [--until-idle] [--max-seconds S]
 *
 * Maps the ring (kmod/pfprof.h), consumes records as the kernel publishes
 * them and writes one CSV row per record:
 *   ts_ns,jiffies,pid,minflt,majflt,cpu_ns,flags
 * or, with --format mp3, the classic lab's four columns per tick
 * (jiffies minflt majflt cpu_ns, summed over the processes of the tick).
 * Records the kernel had to drop (ring full) are reported on stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "pfprof.h"

#define EXIT_USAGE 2

static volatile sig_atomic_t stop_signal;

static void on_stop(int sig)
{
	stop_signal = sig;
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: monitor [options]\n"
"  -o, --output FILE      write to FILE instead of stdout\n"
"  --format csv|mp3       csv (default): one row per record with a header row\n"
"                         ts_ns,jiffies,pid,minflt,majflt,cpu_ns,flags;\n"
"                         mp3: 'jiffies minflt majflt cpu_ns' summed per tick\n"
"  --until-idle           exit once a process was seen, every process seen has\n"
"                         its last record, none is registered and the ring is empty\n"
"  --max-seconds S        exit after S seconds\n"
"  --poll-ms MS           drain the ring at least this often (default 1000)\n"
"  --live                 be woken on every tick (a live view); by default the\n"
"                         kernel wakes the monitor only when the ring is half full\n"
"                         or a registration ended, and it drains every --poll-ms\n"
"  --device PATH          default " PFPROF_DEVICE "\n"
"  --status PATH          default " PFPROF_STATUS " (read by --until-idle)\n"
"Ends on SIGINT/SIGTERM after draining the ring. Drops are reported on stderr,\n"
"with a summary line at exit.\n");
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Processes seen, for --until-idle: open addressing on the pid. */
struct pid_table {
	uint32_t *pid;		/* 0: empty slot */
	bool *active;		/* seen, last record not yet */
	size_t size, used, active_count;
};

static bool *pid_slot(struct pid_table *t, uint32_t pid, bool insert);

static void pid_grow(struct pid_table *t)
{
	struct pid_table old = *t;

	t->size = old.size ? old.size * 2 : 1024;
	t->pid = calloc(t->size, sizeof(*t->pid));
	t->active = calloc(t->size, sizeof(*t->active));
	if (!t->pid || !t->active) {
		fprintf(stderr, "monitor: out of memory\n");
		exit(1);
	}
	t->used = 0;
	for (size_t i = 0; i < old.size; i++)
		if (old.pid[i])
			*pid_slot(t, old.pid[i], true) = old.active[i];
	free(old.pid);
	free(old.active);
}

static bool *pid_slot(struct pid_table *t, uint32_t pid, bool insert)
{
	size_t i;

	if (insert && (t->used + 1) * 2 > t->size)
		pid_grow(t);
	if (!t->size)
		return NULL;
	for (i = (pid * 2654435761u) & (t->size - 1); t->pid[i]; i = (i + 1) & (t->size - 1))
		if (t->pid[i] == pid)
			return &t->active[i];
	if (!insert)
		return NULL;
	t->pid[i] = pid;
	t->used++;
	return &t->active[i];
}

static void pid_record(struct pid_table *t, const struct pfprof_record *r)
{
	bool *active = pid_slot(t, r->pid, true);
	bool now = !(r->flags & PFPROF_REC_EXIT);

	if (*active != now)
		t->active_count += now ? 1 : -1;
	*active = now;
}

/* Number of registered processes listed by the status file, -1 on error. */
static long status_count(const char *path)
{
	char line[256];
	long n = -1;
	FILE *f = fopen(path, "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		n++;	/* the first line is the header */
	fclose(f);
	return n;
}

struct tick_sum {
	bool open;
	uint64_t jiffies, minflt, majflt, cpu_ns;
};

/*
 * One CSV row, formatted by hand: at 32 processes that is 640 rows a second,
 * and printf's generic machinery was most of the monitor's CPU time (which
 * the profiled processes pay for on a single CPU).
 */
static char *put_u64(char *p, uint64_t v)
{
	char digits[20];
	int n = 0;

	do {
		digits[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*p++ = digits[--n];
	return p;
}

static void csv_row(FILE *out, const struct pfprof_record *r)
{
	char line[7 * 21 + 1], *p = line;

	p = put_u64(p, r->ts_ns);
	*p++ = ',';
	p = put_u64(p, r->jiffies);
	*p++ = ',';
	p = put_u64(p, r->pid);
	*p++ = ',';
	p = put_u64(p, r->minflt);
	*p++ = ',';
	p = put_u64(p, r->majflt);
	*p++ = ',';
	p = put_u64(p, r->cpu_ns);
	*p++ = ',';
	p = put_u64(p, r->flags);
	*p++ = '\n';
	fwrite(line, 1, (size_t)(p - line), out);
}

static void tick_flush(FILE *out, struct tick_sum *t)
{
	if (t->open)
		fprintf(out, "%" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n",
			t->jiffies, t->minflt, t->majflt, t->cpu_ns);
	t->open = false;
}

int main(int argc, char **argv)
{
	enum { OPT_FORMAT = 256, OPT_UNTIL_IDLE, OPT_MAX_SECONDS, OPT_POLL, OPT_DEVICE, OPT_STATUS, OPT_LIVE };
	static const struct option longopts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "format", required_argument, NULL, OPT_FORMAT },
		{ "until-idle", no_argument, NULL, OPT_UNTIL_IDLE },
		{ "max-seconds", required_argument, NULL, OPT_MAX_SECONDS },
		{ "poll-ms", required_argument, NULL, OPT_POLL },
		{ "live", no_argument, NULL, OPT_LIVE },
		{ "device", required_argument, NULL, OPT_DEVICE },
		{ "status", required_argument, NULL, OPT_STATUS },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *output = NULL, *device = PFPROF_DEVICE, *status = PFPROF_STATUS;
	bool mp3 = false, until_idle = false, live = false;
	double max_seconds = 0;
	/*
	 * The kernel samples on its own schedule into the ring, so the reader
	 * need not wake with every tick: every wakeup is a context switch that
	 * the profiled processes pay for (under emulation each one flushes the
	 * guest TLB). By default it drains once a second, or when the kernel
	 * says the ring is half full or a process ended.
	 */
	long poll_ms = 1000, wait_ms;
	struct pid_table pids = { 0 };
	struct tick_sum tick = { 0 };
	struct pfprof_ring_header *hdr;
	const struct pfprof_record *slots;
	struct sigaction sa = { 0 };
	uint64_t tail = 0, records = 0, dropped_seen = 0, t_start, capacity;
	size_t page = (size_t)sysconf(_SC_PAGESIZE), map_size;
	char *end, *map;
	FILE *out = stdout;
	int c, fd, status_rc = 0;

	while ((c = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'o':
			output = optarg;
			break;
		case OPT_FORMAT:
			if (!strcmp(optarg, "mp3"))
				mp3 = true;
			else if (strcmp(optarg, "csv")) {
				fprintf(stderr, "monitor: unknown format '%s' (csv or mp3)\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case OPT_UNTIL_IDLE:
			until_idle = true;
			break;
		case OPT_MAX_SECONDS:
			errno = 0;
			max_seconds = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(max_seconds > 0)) {
				fprintf(stderr, "monitor: invalid --max-seconds '%s'\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case OPT_POLL:
			errno = 0;
			poll_ms = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || poll_ms < 1 || poll_ms > 10000) {
				fprintf(stderr, "monitor: invalid --poll-ms '%s' (1-10000)\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case OPT_LIVE:
			live = true;
			break;
		case OPT_DEVICE:
			device = optarg;
			break;
		case OPT_STATUS:
			status = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "monitor: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return EXIT_USAGE;
	}

	/* Keep up while the machine thrashes: none of our pages may be swapped out. */
	if (mlockall(MCL_CURRENT | MCL_FUTURE) < 0)
		fprintf(stderr, "monitor: warning: mlockall: %s (may fall behind under memory pressure)\n",
			strerror(errno));

	fd = open(device, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "monitor: cannot open %s: %s%s\n", device, strerror(errno),
			errno == EBUSY ? " (another reader has it open)" :
			errno == ENOENT ? " (is pfprof loaded?)" :
			errno == EACCES ? " (root only)" : "");
		return 1;
	}
	/* The header says how much to map. */
	hdr = mmap(NULL, page, PROT_READ, MAP_SHARED, fd, 0);
	if (hdr == MAP_FAILED) {
		fprintf(stderr, "monitor: mmap %s: %s\n", device, strerror(errno));
		return 1;
	}
	if (hdr->magic != PFPROF_MAGIC || hdr->version != PFPROF_VERSION ||
	    hdr->record_size != sizeof(struct pfprof_record) || hdr->header_size % page ||
	    hdr->capacity == 0 || hdr->header_size + hdr->capacity * hdr->record_size > hdr->mapping_size) {
		fprintf(stderr, "monitor: %s: unknown ring format (magic %#x version %u record %u)\n",
			device, hdr->magic, hdr->version, hdr->record_size);
		return 1;
	}
	map_size = hdr->mapping_size;
	munmap(hdr, page);
	map = mmap(NULL, map_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		fprintf(stderr, "monitor: mmap %s (%zu bytes): %s\n", device, map_size, strerror(errno));
		return 1;
	}
	hdr = (struct pfprof_ring_header *)map;
	slots = (const struct pfprof_record *)(map + hdr->header_size);
	capacity = hdr->capacity;
	tail = __atomic_load_n(&hdr->data_tail, __ATOMIC_RELAXED);	/* 0 after open */
	__atomic_store_n(&hdr->wakeup_records, live ? 1 : capacity / 2, __ATOMIC_RELAXED);

	if (output) {
		out = fopen(output, "we");
		if (!out) {
			fprintf(stderr, "monitor: cannot open %s: %s\n", output, strerror(errno));
			return 1;
		}
	}
	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);	/* a closed pipe is a write error below */

	if (!mp3)
		fputs("ts_ns,jiffies,pid,minflt,majflt,cpu_ns,flags\n", out);
	fflush(out);
	t_start = mono_ns();

	for (;;) {
		/* Read the stop condition first, so the drain below is the last. */
		bool last = stop_signal ||
			    (max_seconds > 0 && (double)(mono_ns() - t_start) / 1e9 >= max_seconds);
		uint64_t head = __atomic_load_n(&hdr->data_head, __ATOMIC_ACQUIRE);
		uint64_t dropped = __atomic_load_n(&hdr->dropped, __ATOMIC_RELAXED);
		struct pollfd pfd = { .fd = fd, .events = POLLIN };

		if (head - tail > capacity) {
			fprintf(stderr, "monitor: ring protocol error: head %" PRIu64 " tail %" PRIu64 "\n",
				head, tail);
			return 1;
		}
		for (; tail != head; tail++) {
			const struct pfprof_record *r = &slots[tail % capacity];

			if (mp3) {
				if (tick.open && tick.jiffies != r->jiffies)
					tick_flush(out, &tick);
				if (!tick.open)
					tick = (struct tick_sum){ .open = true, .jiffies = r->jiffies };
				tick.minflt += r->minflt;
				tick.majflt += r->majflt;
				tick.cpu_ns += r->cpu_ns;
			} else {
				csv_row(out, r);
			}
			pid_record(&pids, r);
			records++;
		}
		/* Slots read: give them back. */
		__atomic_store_n(&hdr->data_tail, tail, __ATOMIC_RELEASE);

		if (dropped != dropped_seen) {
			fprintf(stderr, "monitor: %" PRIu64 " records dropped (ring full), %" PRIu64
				" in all\n", dropped - dropped_seen, dropped);
			dropped_seen = dropped;
		}
		if (last && mp3)
			tick_flush(out, &tick);
		if (fflush(out) != 0 || ferror(out)) {
			fprintf(stderr, "monitor: write error: %s\n", strerror(errno));
			return 1;
		}
		if (last)
			break;
		if (until_idle && pids.used && !pids.active_count &&
		    __atomic_load_n(&hdr->data_head, __ATOMIC_ACQUIRE) == tail) {
			long n = status_count(status);

			if (n < 0) {
				fprintf(stderr, "monitor: cannot read %s\n", status);
				status_rc = 1;
			}
			if (n <= 0) {
				stop_signal = -1;	/* one more drain, then exit */
				continue;
			}
		}
		wait_ms = poll_ms;
		if (max_seconds > 0) {	/* wake for the deadline too */
			double left_ms = max_seconds * 1e3 - (double)(mono_ns() - t_start) / 1e6;

			wait_ms = left_ms < 1 ? 1 : left_ms < (double)poll_ms ? (long)left_ms + 1 : poll_ms;
		}
		poll(&pfd, 1, (int)wait_ms);	/* EINTR: a signal, seen above */
	}

	fprintf(stderr, "monitor: records %" PRIu64 " dropped %" PRIu64 " processes %zu\n",
		records, dropped_seen, pids.used);
	if (out != stdout && fclose(out) != 0) {
		fprintf(stderr, "monitor: closing %s: %s\n", output, strerror(errno));
		return 1;
	}
	return status_rc;
}
