/* SPDX-License-Identifier: GPL-2.0 */
/*
 * pfprof_internal.h - what the three parts of the module share:
 *   pfprof_main.c  parameters, the registry of processes, timer and work
 *   pfprof_ring.c  the ring buffer and /dev/pfprof
 *   pfprof_proc.c  /proc/pfprof/{status,stats}
 */
#ifndef PFPROF_INTERNAL_H
#define PFPROF_INTERNAL_H

#include <linux/mutex.h>
#include <linux/seq_file.h>
#include <linux/types.h>

#include "pfprof.h"
#include "pfprof_compat.h"

/*
 * pfprof_lock serialises the registry, the ring's producer side and the
 * statistics. It is a mutex: the work handler, /proc writes and device
 * open/release take it, never the timer. Nothing waits for the work or the
 * timer while holding it.
 */
extern struct mutex pfprof_lock;

/* pfprof_main.c */
int pfprof_register(struct file *file, int nr);
int pfprof_unregister(struct file *file, int nr);
void pfprof_show_status(struct seq_file *m);
void pfprof_show_stats(struct seq_file *m);

/* pfprof_ring.c */
int pfprof_ring_init(unsigned int pages, unsigned int interval_ms);
void pfprof_ring_exit(void);
int pfprof_dev_init(void);
void pfprof_dev_exit(void);
/* What became of a record given to pfprof_ring_put(). */
enum pfprof_put {
	PFPROF_PUT_WRITTEN,	/* in the ring */
	PFPROF_PUT_DROPPED,	/* ring full: counted in dropped, not written */
	PFPROF_PUT_NO_READER,	/* /dev/pfprof is not open: no stream */
};
enum pfprof_put pfprof_ring_put(const struct pfprof_record *rec);	/* pfprof_lock held */
void pfprof_ring_wake(void);
void pfprof_ring_wake_due(bool ended);
void pfprof_ring_show_stats(struct seq_file *m);	/* pfprof_lock held */

/* pfprof_proc.c */
int pfprof_proc_init(void);
void pfprof_proc_exit(void);

#endif /* PFPROF_INTERNAL_H */
