// SPDX-License-Identifier: GPL-2.0
/*
 * pfprof_main.c - pfprof, a per-process page-fault and CPU-time profiler.
 *
 * Processes (thread groups) are registered through /proc/pfprof/status.
 * While at least one is registered, a timer fires every interval_ms and
 * queues a work item; the work samples every registered process and writes
 * one record per process into the ring mapped by /dev/pfprof (pfprof_ring.c).
 * The task's counters are only read, never reset.
 *
 * Lifetime rules:
 *  - each registration holds a struct pid (identity: a reused pid number is
 *    another struct pid) and a task_struct reference (its ->signal keeps the
 *    final counts readable after the exit, even once the process is reaped);
 *  - nothing is lost: a record that finds the ring full is not written and
 *    its deltas stay with the registration until a record is written; a
 *    registration that ended (exit or "U") stays listed until its EXIT record
 *    is written, or until no reader has the device open (no stream to end);
 *  - the timer never sleeps and takes only tick_lock; the work and /proc
 *    writers take pfprof_lock; nobody waits for the timer or the work while
 *    holding either lock, so unregistering the last process cannot deadlock;
 *  - unload stops the timer, then drains the work, then frees.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/cred.h>
#include <linux/fs.h>
#include <linux/jiffies.h>
#include <linux/ktime.h>
#include <linux/list.h>
#include <linux/math64.h>
#include <linux/module.h>
#include <linux/pid.h>
#include <linux/rcupdate.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/sched/task.h>
#include <linux/seqlock.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/timer.h>
#include <linux/user_namespace.h>
#include <linux/workqueue.h>

#include "pfprof_internal.h"

static unsigned int interval_ms = 50;
module_param(interval_ms, uint, 0444);
MODULE_PARM_DESC(interval_ms, "Sampling period in ms, 1-60000, at least one jiffy (default 50)");

static unsigned int buffer_pages = 128;
module_param(buffer_pages, uint, 0444);
MODULE_PARM_DESC(buffer_pages, "Ring size in pages including the header page, 2-65536 (default 128)");

static unsigned int max_processes = 1024;
module_param(max_processes, uint, 0444);
MODULE_PARM_DESC(max_processes, "Most processes registered at once, 1-65536 (default 1024)");

/* A quarter of the default max_processes: far above one lab's processes. */
static unsigned int max_per_user = 256;
module_param(max_per_user, uint, 0444);
MODULE_PARM_DESC(max_per_user, "Most processes registered at once by one user (real uid of the registering opener), 1-65536 (default 256)");

DEFINE_MUTEX(pfprof_lock);

struct pfprof_counts {
	u64 minflt;
	u64 majflt;
	u64 cpu_ns;
};

struct pfprof_proc {
	struct list_head node;
	struct pid *pid;		/* identity of the process */
	struct task_struct *task;	/* leader at registration, for ->signal */
	kuid_t owner;			/* real uid of who registered it: max_per_user */
	u32 nr;				/* tgid in the initial namespace */
	bool first;			/* no record written yet: the next is FIRST */
	u32 end_flags;			/* EXIT[|UNREG] once ended; its record is pending */
	struct pfprof_counts base;	/* at registration: status shows totals since */
	struct pfprof_counts prev;	/* at the last record written: records carry deltas */
	struct pfprof_counts end;	/* final counts, frozen when it ended */
};

/* Under pfprof_lock. */
static LIST_HEAD(pfprof_procs);
static unsigned int pfprof_nr_procs;
static unsigned int pfprof_nr_ending;	/* ended, final record not yet written */
static struct {
	u64 ticks;
	u64 work_ns_sum, work_ns_max;
	u64 late_ns_sum, late_ns_max;
	/* lateness split: timer expiry after the due time, then the wait in the workqueue */
	u64 timer_late_ns_sum, timer_late_ns_max, timer_late_over_jiffy;
	u64 queue_delay_ns_sum, queue_delay_ns_max, queue_delay_over_jiffy;
} pfprof_stats;

/*
 * Timer state, under tick_lock (the timer takes it in softirq context, the
 * others with spin_lock_bh). Tick n is due at tick_base_ns + n * interval
 * (a fixed schedule: no drift from rounding to jiffies).
 */
static DEFINE_SPINLOCK(tick_lock);
static bool tick_running;
static u64 tick_base_ns, tick_base_j, tick_seq;
static u64 tick_expected_ns;	/* due time of the tick that queued the work */
static u64 tick_fired_ns;	/* when that tick's timer callback ran */
static u64 ticks_merged;	/* timer fired while the work was still queued */
static u64 ticks_resync;	/* schedule restarted after the timer ran very late */
static u64 interval_ns;

static struct timer_list tick_timer;
static struct workqueue_struct *pfprof_wq;
static struct work_struct sample_work;

/*
 * Whole-thread-group counters, as /proc/<pid>/stat and getrusage() add them:
 * the totals of exited threads (signal_struct) plus every live thread.
 * Exiting threads fold their counts into the signal_struct and leave the
 * thread list under stats_lock, so a seqlock retry gives a consistent sum.
 * CPU time is the scheduler's runtime (what utime+stime are scaled to);
 * thread_group_cputime() is not exported, so sum it here.
 */
static void pfprof_read_counts(struct task_struct *task, struct pfprof_counts *c)
{
	struct signal_struct *sig = task->signal;
	struct task_struct *t;
	unsigned long irqflags;
	int seq, nextseq = 0;

	/*
	 * As thread_group_cputime(): lockless first; if a writer got in the
	 * way, take the lock the second time, so a group whose threads keep
	 * exiting cannot keep the reader retrying.
	 */
	rcu_read_lock();
	do {
		seq = nextseq;
		irqflags = read_seqbegin_or_lock_irqsave(&sig->stats_lock, &seq);
		c->minflt = sig->min_flt;
		c->majflt = sig->maj_flt;
		c->cpu_ns = sig->sum_sched_runtime;
		__for_each_thread(sig, t) {
			c->minflt += READ_ONCE(t->min_flt);
			c->majflt += READ_ONCE(t->maj_flt);
			c->cpu_ns += READ_ONCE(t->se.sum_exec_runtime);
		}
		nextseq = 1;	/* odd: lock on the next pass */
	} while (need_seqretry(&sig->stats_lock, seq));
	done_seqretry_irqrestore(&sig->stats_lock, seq, irqflags);
	rcu_read_unlock();
}

/*
 * True once every thread has exited (zombie leader, empty group) or the
 * process was reaped. Then the counters are final. (The exported
 * thread_group_exited() is gone from newer kernels.)
 */
static bool pfprof_exited(struct pid *pid)
{
	struct task_struct *leader;
	bool exited;

	rcu_read_lock();
	leader = pid_task(pid, PIDTYPE_TGID);
	exited = !leader || (READ_ONCE(leader->exit_state) && thread_group_empty(leader));
	rcu_read_unlock();
	return exited;
}

/* Counts now, or the frozen final ones of a registration that ended. */
static void pfprof_counts_of(struct pfprof_proc *p, struct pfprof_counts *c)
{
	if (p->end_flags)
		*c = p->end;
	else
		pfprof_read_counts(p->task, c);
}

/* The registration ended (exit or "U"): freeze its counts, its record is due. */
static void pfprof_end(struct pfprof_proc *p, u32 end_flags)
{
	lockdep_assert_held(&pfprof_lock);
	pfprof_read_counts(p->task, &p->end);
	p->end_flags = end_flags;
	pfprof_nr_ending++;
}

/*
 * Sample p and try to write its record: the deltas since the last record
 * that was written, so a dropped one is carried into the next. Returns true
 * when the registration is over: its final record was written, or it ended
 * while no reader has the device open (no stream to end; see kmod/README.md).
 */
static bool pfprof_emit(struct pfprof_proc *p, u64 ts, u64 j)
{
	struct pfprof_counts now;
	struct pfprof_record rec;

	/* Exit test first: counters read after it are the final ones. */
	if (!p->end_flags && pfprof_exited(p->pid))
		pfprof_end(p, PFPROF_REC_EXIT);
	pfprof_counts_of(p, &now);

	rec = (struct pfprof_record) {
		.ts_ns = ts,
		.jiffies = j,
		.pid = p->nr,
		.flags = p->end_flags | (p->first ? PFPROF_REC_FIRST : 0),
		.minflt = now.minflt - p->prev.minflt,
		.majflt = now.majflt - p->prev.majflt,
		.cpu_ns = now.cpu_ns - p->prev.cpu_ns,
	};
	switch (pfprof_ring_put(&rec)) {
	case PFPROF_PUT_WRITTEN:
		p->prev = now;
		p->first = false;
		return p->end_flags;
	case PFPROF_PUT_NO_READER:
		return p->end_flags;
	case PFPROF_PUT_DROPPED:
	default:
		return false;
	}
}

static void pfprof_remove(struct pfprof_proc *p)
{
	lockdep_assert_held(&pfprof_lock);
	list_del(&p->node);
	pfprof_nr_procs--;
	if (p->end_flags)
		pfprof_nr_ending--;
	put_task_struct(p->task);
	put_pid(p->pid);
	kfree(p);
}

static unsigned long tick_expiry(u64 seq)
{
	return (unsigned long)(tick_base_j + DIV_ROUND_UP_ULL(seq * interval_ns, TICK_NSEC));
}

static void tick_restart_locked(void)
{
	tick_base_j = get_jiffies_64();
	tick_base_ns = ktime_get_ns();
	tick_seq = 1;
	mod_timer(&tick_timer, tick_expiry(tick_seq));
}

/* The timer only queues the work and re-arms itself while running. */
static void pfprof_tick(struct timer_list *unused)
{
	u64 now = ktime_get_ns();	/* before the lock: when the timer fired */
	unsigned long next;

	spin_lock(&tick_lock);
	if (!tick_running)
		goto out;
	if (queue_work(pfprof_wq, &sample_work)) {
		tick_expected_ns = tick_base_ns + tick_seq * interval_ns;
		tick_fired_ns = now;
	} else {
		ticks_merged++;
	}
	next = tick_expiry(++tick_seq);
	if (time_before_eq(next, jiffies)) {
		/* A whole period late (stalled machine): no burst of catch-up ticks. */
		ticks_resync++;
		tick_restart_locked();
	} else {
		mod_timer(&tick_timer, next);
	}
out:
	spin_unlock(&tick_lock);
}

static void tick_start(void)
{
	spin_lock_bh(&tick_lock);
	if (!tick_running) {
		tick_running = true;
		tick_restart_locked();
	}
	spin_unlock_bh(&tick_lock);
}

/*
 * Asynchronous stop, safe under pfprof_lock: a callback already running sees
 * !tick_running and does not re-arm; a work already queued finds nothing or
 * new registrations. Only unload waits (timer_delete_sync, no lock held).
 */
static void tick_stop(void)
{
	spin_lock_bh(&tick_lock);
	tick_running = false;
	timer_delete(&tick_timer);
	spin_unlock_bh(&tick_lock);
}

static void pfprof_sample_all(struct work_struct *work)
{
	struct pfprof_proc *p, *tmp;
	u64 start = ktime_get_ns();
	u64 j = get_jiffies_64();
	u64 expected, fired, late, timer_late, queue_delay, locked, took;
	bool ended = false;

	spin_lock_bh(&tick_lock);
	expected = tick_expected_ns;
	fired = tick_fired_ns;
	spin_unlock_bh(&tick_lock);
	/*
	 * A tick can start just before its due time: jiffies are coarser than ns.
	 * Lateness splits into the timer's (the vCPU or the softirq ran late) and
	 * the workqueue's (the work waited behind runnable tasks); both are
	 * clamped, so their sum exceeds late when the timer fired early.
	 */
	late = start > expected ? start - expected : 0;
	timer_late = fired > expected ? fired - expected : 0;
	queue_delay = start > fired ? start - fired : 0;

	mutex_lock(&pfprof_lock);
	if (list_empty(&pfprof_procs)) {	/* queued before the last unregistration */
		mutex_unlock(&pfprof_lock);
		return;
	}
	locked = ktime_get_ns();	/* work_ns: the sampling, not the wait for the lock */
	list_for_each_entry_safe(p, tmp, &pfprof_procs, node) {
		if (pfprof_emit(p, start, j)) {
			pfprof_remove(p);
			ended = true;
		}
	}
	if (!pfprof_nr_procs)
		tick_stop();

	took = ktime_get_ns() - locked;
	pfprof_stats.ticks++;
	pfprof_stats.work_ns_sum += took;
	pfprof_stats.work_ns_max = max(pfprof_stats.work_ns_max, took);
	pfprof_stats.late_ns_sum += late;
	pfprof_stats.late_ns_max = max(pfprof_stats.late_ns_max, late);
	pfprof_stats.timer_late_ns_sum += timer_late;
	pfprof_stats.timer_late_ns_max = max(pfprof_stats.timer_late_ns_max, timer_late);
	pfprof_stats.timer_late_over_jiffy += timer_late > TICK_NSEC;
	pfprof_stats.queue_delay_ns_sum += queue_delay;
	pfprof_stats.queue_delay_ns_max = max(pfprof_stats.queue_delay_ns_max, queue_delay);
	pfprof_stats.queue_delay_over_jiffy += queue_delay > TICK_NSEC;
	pfprof_ring_wake_due(ended);
	mutex_unlock(&pfprof_lock);
}

static struct pfprof_proc *pfprof_find(struct pid *pid)
{
	struct pfprof_proc *p;

	lockdep_assert_held(&pfprof_lock);
	list_for_each_entry(p, &pfprof_procs, node)
		if (p->pid == pid)
			return p;
	return NULL;
}

static unsigned int pfprof_count_owned(kuid_t owner)
{
	struct pfprof_proc *p;
	unsigned int n = 0;

	lockdep_assert_held(&pfprof_lock);
	list_for_each_entry(p, &pfprof_procs, node)
		n += uid_eq(p->owner, owner);
	return n;
}

/*
 * The rule of kill(2), applied to whoever opened the status file (not to
 * the writer, so a setuid program cannot be used as a confused deputy):
 * real or effective uid equal to the target's real or saved uid, or
 * CAP_SYS_ADMIN.
 */
static bool pfprof_may_profile(const struct file *file, struct task_struct *task)
{
	const struct cred *cred = file->f_cred;
	const struct cred *tcred;
	bool ok;

	rcu_read_lock();
	tcred = __task_cred(task);
	ok = uid_eq(cred->euid, tcred->suid) || uid_eq(cred->euid, tcred->uid) ||
	     uid_eq(cred->uid, tcred->suid) || uid_eq(cred->uid, tcred->uid);
	rcu_read_unlock();
	return ok || file_ns_capable(file, &init_user_ns, CAP_SYS_ADMIN);
}

/*
 * The thread group whose tgid is nr in the caller's pid namespace, with
 * references on its struct pid and leader. A thread id that is not a tgid
 * is not a process: ESRCH.
 */
static struct task_struct *pfprof_lookup(int nr, struct pid **pidp)
{
	struct task_struct *task;
	struct pid *pid;

	pid = find_get_pid(nr);
	if (!pid)
		return NULL;
	task = get_pid_task(pid, PIDTYPE_TGID);
	if (!task) {
		put_pid(pid);
		return NULL;
	}
	*pidp = pid;
	return task;
}

int pfprof_register(struct file *file, int nr)
{
	struct pfprof_proc *p = NULL;
	struct task_struct *task;
	struct pid *pid;
	int err;

	task = pfprof_lookup(nr, &pid);
	if (!task)
		return -ESRCH;
	if (pfprof_exited(pid)) {
		err = -ESRCH;		/* a zombie has nothing left to profile */
		goto out_put;
	}
	if (!pfprof_may_profile(file, task)) {
		err = -EPERM;
		goto out_put;
	}
	/* Allocated outside the lock; its failure is reported after the checks. */
	p = kzalloc(sizeof(*p), GFP_KERNEL);

	mutex_lock(&pfprof_lock);
	if (pfprof_find(pid)) {
		err = -EEXIST;	/* also while its final record is pending */
	} else if (pfprof_nr_procs >= max_processes ||
		   pfprof_count_owned(file->f_cred->uid) >= max_per_user) {
		err = -ENOSPC;
	} else if (!p) {
		err = -ENOMEM;
	} else {
		p->pid = pid;
		p->task = task;
		p->owner = file->f_cred->uid;
		p->nr = pid_nr(pid);
		p->first = true;
		pfprof_read_counts(task, &p->base);
		p->prev = p->base;
		list_add_tail(&p->node, &pfprof_procs);
		if (pfprof_nr_procs++ == 0)
			tick_start();
		err = 0;
	}
	mutex_unlock(&pfprof_lock);
	if (!err)
		return 0;
	kfree(p);
out_put:
	put_task_struct(task);
	put_pid(pid);
	return err;
}

int pfprof_unregister(struct file *file, int nr)
{
	struct task_struct *task;
	struct pfprof_proc *p;
	struct pid *pid;
	int err;

	task = pfprof_lookup(nr, &pid);
	if (!task)
		return -ESRCH;
	if (!pfprof_may_profile(file, task)) {
		err = -EPERM;
		goto out_put;
	}
	mutex_lock(&pfprof_lock);
	p = pfprof_find(pid);
	if (!p || p->end_flags) {
		err = -ENOENT;	/* an ended registration is no longer registered */
	} else {
		/*
		 * A last record so that the records sum to the totals. If the
		 * ring is full it stays listed and the ticks retry it.
		 */
		pfprof_end(p, PFPROF_REC_EXIT | PFPROF_REC_UNREG);
		if (pfprof_emit(p, ktime_get_ns(), get_jiffies_64()))
			pfprof_remove(p);
		if (!pfprof_nr_procs)
			tick_stop();
		err = 0;
	}
	mutex_unlock(&pfprof_lock);
	if (!err)
		pfprof_ring_wake();
out_put:
	put_task_struct(task);
	put_pid(pid);
	return err;
}

void pfprof_show_status(struct seq_file *m)
{
	struct pfprof_counts now;
	struct pfprof_proc *p;
	pid_t nr;

	seq_puts(m, "pid minflt majflt cpu_ns\n");
	mutex_lock(&pfprof_lock);
	list_for_each_entry(p, &pfprof_procs, node) {
		nr = pid_vnr(p->pid);
		if (!nr)	/* not visible in the reader's pid namespace */
			continue;
		/* Only the processes the reader could register (opener's creds). */
		if (!pfprof_may_profile(m->file, p->task))
			continue;
		pfprof_counts_of(p, &now);
		seq_printf(m, "%d %llu %llu %llu\n", nr,
			   now.minflt - p->base.minflt, now.majflt - p->base.majflt,
			   now.cpu_ns - p->base.cpu_ns);
	}
	mutex_unlock(&pfprof_lock);
}

static u64 pfprof_mean(u64 sum, u64 n)
{
	return n ? div64_u64(sum, n) : 0;
}

void pfprof_show_stats(struct seq_file *m)
{
	u64 merged, resync;

	spin_lock_bh(&tick_lock);
	merged = ticks_merged;
	resync = ticks_resync;
	spin_unlock_bh(&tick_lock);

	mutex_lock(&pfprof_lock);
	seq_printf(m, "ticks %llu\n", pfprof_stats.ticks);
	seq_printf(m, "ticks_merged %llu\n", merged);
	seq_printf(m, "ticks_resync %llu\n", resync);
	pfprof_ring_show_stats(m);
	/* Sums too, so that a reader can take the mean over any stretch of ticks. */
	seq_printf(m, "work_ns_sum %llu\n", pfprof_stats.work_ns_sum);
	seq_printf(m, "work_ns_mean %llu\n", pfprof_mean(pfprof_stats.work_ns_sum, pfprof_stats.ticks));
	seq_printf(m, "work_ns_max %llu\n", pfprof_stats.work_ns_max);
	seq_printf(m, "lateness_ns_sum %llu\n", pfprof_stats.late_ns_sum);
	seq_printf(m, "lateness_ns_mean %llu\n", pfprof_mean(pfprof_stats.late_ns_sum, pfprof_stats.ticks));
	seq_printf(m, "lateness_ns_max %llu\n", pfprof_stats.late_ns_max);
	seq_printf(m, "timer_late_ns_sum %llu\n", pfprof_stats.timer_late_ns_sum);
	seq_printf(m, "timer_late_ns_max %llu\n", pfprof_stats.timer_late_ns_max);
	seq_printf(m, "queue_delay_ns_sum %llu\n", pfprof_stats.queue_delay_ns_sum);
	seq_printf(m, "queue_delay_ns_max %llu\n", pfprof_stats.queue_delay_ns_max);
	seq_printf(m, "timer_late_ticks_over_jiffy %llu\n", pfprof_stats.timer_late_over_jiffy);
	seq_printf(m, "queue_delay_ticks_over_jiffy %llu\n", pfprof_stats.queue_delay_over_jiffy);
	seq_printf(m, "registered %u\n", pfprof_nr_procs);
	seq_printf(m, "ending %u\n", pfprof_nr_ending);
	seq_printf(m, "max_processes %u\n", max_processes);
	seq_printf(m, "max_per_user %u\n", max_per_user);
	seq_printf(m, "interval_ms %u\n", interval_ms);
	seq_printf(m, "interval_ns %llu\n", interval_ns);
	seq_printf(m, "buffer_pages %u\n", buffer_pages);
	seq_printf(m, "hz %u\n", HZ);
	mutex_unlock(&pfprof_lock);
}

/*
 * The one teardown path, for unload and for a failed load: undoes whatever
 * was set up, in reverse order. The user-visible entries go first, so no new
 * registration or reader can come; then the timer and the work stop, with
 * no lock held; only then are the registrations and the ring freed.
 */
static void pfprof_teardown(void)
{
	struct pfprof_proc *p, *tmp;

	pfprof_proc_exit();	/* waits for /proc writers and readers in progress */
	pfprof_dev_exit();	/* no reader: an open device holds the module */
	tick_stop();
	timer_delete_sync(&tick_timer);
	if (pfprof_wq) {
		destroy_workqueue(pfprof_wq);	/* waits for a queued or running work */
		pfprof_wq = NULL;
	}
	mutex_lock(&pfprof_lock);
	list_for_each_entry_safe(p, tmp, &pfprof_procs, node)
		pfprof_remove(p);
	mutex_unlock(&pfprof_lock);
	pfprof_ring_exit();
}

static int __init pfprof_init(void)
{
	int err;

	if (interval_ms < 1 || interval_ms > 60000 ||
	    buffer_pages < 2 || buffer_pages > 65536 ||
	    max_processes < 1 || max_processes > 65536 ||
	    max_per_user < 1 || max_per_user > 65536) {
		pr_err("invalid parameter: interval_ms=%u buffer_pages=%u max_processes=%u max_per_user=%u\n",
		       interval_ms, buffer_pages, max_processes, max_per_user);
		return -EINVAL;
	}
	/* The timer counts in jiffies: a shorter period is one jiffy. */
	interval_ns = max_t(u64, (u64)interval_ms * NSEC_PER_MSEC, TICK_NSEC);
	INIT_WORK(&sample_work, pfprof_sample_all);
	timer_setup(&tick_timer, pfprof_tick, 0);

	err = pfprof_ring_init(buffer_pages, interval_ms);
	if (err)
		goto fail;
	/* High priority: sampling on time matters most when the machine thrashes. */
	pfprof_wq = alloc_workqueue("pfprof", WQ_UNBOUND | WQ_HIGHPRI | WQ_MEM_RECLAIM, 1);
	if (!pfprof_wq) {
		err = -ENOMEM;
		goto fail;
	}
	/* Last, what users can reach: the device, then the /proc files. */
	err = pfprof_dev_init();
	if (err)
		goto fail;
	err = pfprof_proc_init();
	if (err)
		goto fail;
	pr_info("loaded: interval_ms=%u buffer_pages=%u max_processes=%u max_per_user=%u\n",
		interval_ms, buffer_pages, max_processes, max_per_user);
	return 0;

fail:
	pfprof_teardown();
	return err;
}

static void __exit pfprof_exit(void)
{
	pfprof_teardown();
}

module_init(pfprof_init);
module_exit(pfprof_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Per-process page-fault and CPU-time profiler with an mmap'd ring");
MODULE_AUTHOR("thrashlab");
