/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * pfprof.h - the user-space contract of the pfprof page-fault profiler.
 *
 * Included by the module and by readers (workloads/monitor.c): it describes
 * the files, the mmap'd ring of /dev/pfprof and its records. kmod/README.md
 * explains the protocol with a complete reader.
 */
#ifndef _UAPI_PFPROF_H
#define _UAPI_PFPROF_H

#include <linux/types.h>

#define PFPROF_DEVICE		"/dev/pfprof"
#define PFPROF_STATUS		"/proc/pfprof/status"
#define PFPROF_STATS		"/proc/pfprof/stats"

/* Longest command accepted by PFPROF_STATUS ("R <pid>" / "U <pid>"). */
#define PFPROF_CMD_MAX		32

#define PFPROF_MAGIC		0x46525046u	/* bytes "FPRF" in memory (little endian) */
#define PFPROF_VERSION		1

/*
 * The first page of the mapping. Fields marked (K) are written by the
 * kernel only, (U) by the reader only. data_head and data_tail count records
 * since the device was opened (they never wrap in practice); the record with
 * sequence number n lives in slot n % capacity.
 *
 * Reader:  head = load_acquire(&data_head);
 *          consume records tail .. head-1;
 *          store_release(&data_tail, head);
 * Kernel:  tail = load_acquire(&data_tail);
 *          if (head - tail >= capacity) drop the record and count it;
 *          else write slot head % capacity, store_release(&data_head, head+1).
 * Unread records are never overwritten.
 */
struct pfprof_ring_header {
	__u32 magic;		/* (K) PFPROF_MAGIC */
	__u32 version;		/* (K) PFPROF_VERSION */
	__u32 header_size;	/* (K) bytes from the mapping's start to slot 0 */
	__u32 record_size;	/* (K) sizeof(struct pfprof_record) */
	__u64 capacity;		/* (K) number of record slots */
	__u64 mapping_size;	/* (K) bytes that may be mapped (header included) */
	__u32 interval_ms;	/* (K) sampling period */
	__u32 hz;		/* (K) jiffies per second of the kernel */
	__u64 reserved0[3];
	/* offset 64: own cache line, the kernel stores it on every record */
	__u64 data_head;	/* (K) records written since open */
	__u64 reserved1[7];
	/* offset 128: own cache line, the reader stores it */
	__u64 data_tail;	/* (U) records consumed since open */
	/*
	 * (U) Wake the reader once this many records are unread (like perf's
	 * wakeup_watermark); 0 or 1: on every tick. A record that ends a
	 * registration always wakes it. A reader that drains on its own timer
	 * as well sets it high and wakes far less often than 20 times a second.
	 */
	__u64 wakeup_records;
	__u64 reserved2[6];
	/* offset 192 */
	__u64 dropped;		/* (K) records dropped because the ring was full, since open */
	__u64 reserved3[7];
};

/* struct pfprof_record.flags */
#define PFPROF_REC_EXIT		(1u << 0)	/* last record of this registration */
#define PFPROF_REC_FIRST	(1u << 1)	/* first record after registration */
#define PFPROF_REC_UNREG	(1u << 2)	/* with EXIT: ended by "U <pid>", not by the exit */

/*
 * One sample of one process (thread group): the deltas since its previous
 * record (or since registration for the FIRST one). All records written by
 * one tick share ts_ns and jiffies, so grouping on jiffies gives the per-tick
 * sums of the classic lab.
 */
struct pfprof_record {
	__u64 ts_ns;		/* ktime_get_ns(): CLOCK_MONOTONIC, ns */
	__u64 jiffies;		/* get_jiffies_64() */
	__u32 pid;		/* tgid, in the initial pid namespace */
	__u32 flags;		/* PFPROF_REC_* */
	__u64 minflt;		/* minor faults, whole thread group */
	__u64 majflt;		/* major faults, whole thread group */
	__u64 cpu_ns;		/* user+system CPU time, whole thread group, ns */
};

#endif /* _UAPI_PFPROF_H */
