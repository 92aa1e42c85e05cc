// SPDX-License-Identifier: GPL-2.0
/*
 * pfprof_ring.c - the record ring and /dev/pfprof.
 *
 * One vmalloc_user() area: a header page (struct pfprof_ring_header) then
 * the record slots. The kernel is the only producer (under pfprof_lock), a
 * single reader maps the area and consumes; the protocol is the one of
 * perf's mmap page (see pfprof.h). A full ring drops the new record and
 * counts it: unread records are never overwritten.
 *
 * Records are written only while the device is open: opening starts a new
 * stream (the whole header page rewritten: head, tail and dropped at 0). The
 * device holds the module (.owner) while it is open or mapped, so the area
 * outlives every mapping. The producer tells the caller whether a record was
 * written, dropped or had no reader: pfprof_main.c carries what was not
 * written into the next record.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/bitops.h>
#include <linux/build_bug.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/poll.h>
#include <linux/stddef.h>
#include <linux/vmalloc.h>
#include <linux/wait.h>

#include "pfprof_internal.h"

static void *ring_area;
static size_t ring_size;
static struct pfprof_ring_header *ring_hdr;
static struct pfprof_record *ring_slots;
static u64 ring_capacity;
static unsigned int ring_interval_ms;

/* Producer state, under pfprof_lock. */
static u64 ring_head;		/* records written since open */
static u64 ring_head_slot;	/* ring_head % ring_capacity */
static u64 ring_dropped;	/* since open, mirrored in the header */
static bool ring_reader;	/* the device is open */
static u64 stat_written, stat_dropped, stat_no_reader;	/* since load */

static unsigned long dev_busy;	/* bit 0: the device is open */
static bool dev_registered;
static DECLARE_WAIT_QUEUE_HEAD(ring_wait);

/* The layout user space relies on. */
static_assert(sizeof(struct pfprof_record) == 48);
static_assert(offsetof(struct pfprof_ring_header, data_head) == 64);
static_assert(offsetof(struct pfprof_ring_header, data_tail) == 128);
static_assert(offsetof(struct pfprof_ring_header, wakeup_records) == 136);
static_assert(offsetof(struct pfprof_ring_header, dropped) == 192);
static_assert(sizeof(struct pfprof_ring_header) == 256);

enum pfprof_put pfprof_ring_put(const struct pfprof_record *rec)
{
	u64 tail;

	lockdep_assert_held(&pfprof_lock);
	if (!ring_reader) {
		stat_no_reader++;
		return PFPROF_PUT_NO_READER;
	}
	/* Pairs with the reader's release: it is done reading those slots. */
	tail = smp_load_acquire(&ring_hdr->data_tail);
	/* Full; a bogus tail (ahead of head, too far behind) counts as full. */
	if (ring_head - tail >= ring_capacity) {
		stat_dropped++;
		WRITE_ONCE(ring_hdr->dropped, ++ring_dropped);
		return PFPROF_PUT_DROPPED;
	}
	ring_slots[ring_head_slot] = *rec;
	/* Publish the slot before the new head. */
	smp_store_release(&ring_hdr->data_head, ring_head + 1);
	ring_head++;
	if (++ring_head_slot == ring_capacity)
		ring_head_slot = 0;
	stat_written++;
	return PFPROF_PUT_WRITTEN;
}

void pfprof_ring_wake(void)
{
	wake_up_interruptible(&ring_wait);
}

/* After a tick: wake the reader if it asked for this much (see pfprof.h). */
void pfprof_ring_wake_due(bool ended)
{
	u64 unread, mark;

	lockdep_assert_held(&pfprof_lock);
	if (!ring_reader)
		return;
	unread = ring_head - smp_load_acquire(&ring_hdr->data_tail);
	mark = READ_ONCE(ring_hdr->wakeup_records);
	/* A bogus watermark (past the capacity) would never wake: cap it. */
	mark = clamp_t(u64, mark, 1, max_t(u64, ring_capacity / 2, 1));
	if (ended || unread >= mark)
		wake_up_interruptible(&ring_wait);
}

void pfprof_ring_show_stats(struct seq_file *m)
{
	lockdep_assert_held(&pfprof_lock);
	seq_printf(m, "records_written %llu\n", stat_written);
	seq_printf(m, "records_dropped %llu\n", stat_dropped);
	seq_printf(m, "records_no_reader %llu\n", stat_no_reader);
	seq_printf(m, "ring_capacity %llu\n", ring_capacity);
	seq_printf(m, "reader %d\n", ring_reader);
}

/*
 * The whole header page as the kernel defines it: what a previous reader
 * wrote anywhere in it (even over magic or capacity) is gone. Nobody has it
 * mapped: at load, or at open (release comes after the last munmap).
 */
static void pfprof_ring_reset_header(void)
{
	memset(ring_hdr, 0, PAGE_SIZE);
	ring_hdr->magic = PFPROF_MAGIC;
	ring_hdr->version = PFPROF_VERSION;
	ring_hdr->header_size = PAGE_SIZE;
	ring_hdr->record_size = sizeof(struct pfprof_record);
	ring_hdr->capacity = ring_capacity;
	ring_hdr->mapping_size = ring_size;
	ring_hdr->interval_ms = ring_interval_ms;
	ring_hdr->hz = HZ;
}

static int pfprof_dev_open(struct inode *inode, struct file *file)
{
	/* Single consumer: one open file (it may be shared after fork or dup). */
	if (test_and_set_bit_lock(0, &dev_busy))
		return -EBUSY;
	mutex_lock(&pfprof_lock);
	ring_head = 0;
	ring_head_slot = 0;
	ring_dropped = 0;
	pfprof_ring_reset_header();
	ring_reader = true;
	mutex_unlock(&pfprof_lock);
	return nonseekable_open(inode, file);
}

/* Called when the last reference goes: the last mapping is gone too. */
static int pfprof_dev_release(struct inode *inode, struct file *file)
{
	mutex_lock(&pfprof_lock);
	ring_reader = false;
	mutex_unlock(&pfprof_lock);
	clear_bit_unlock(0, &dev_busy);
	return 0;
}

static int pfprof_dev_mmap(struct file *file, struct vm_area_struct *vma)
{
	unsigned long size = vma->vm_end - vma->vm_start;

	/* From the start, within the area; remap_vmalloc_range() checks again. */
	if (vma->vm_pgoff != 0 || size > ring_size)
		return -EINVAL;
	/* A private mapping would copy the header: data_tail would never arrive. */
	if (!(vma->vm_flags & VM_MAYSHARE))
		return -EINVAL;
	/* Data, never code: no PROT_EXEC now, none by mprotect() later. */
	if (vma->vm_flags & VM_EXEC)
		return -EPERM;
	pfprof_vm_flags_clear(vma, VM_MAYEXEC);
	/* Not inherited by fork: one consumer. */
	pfprof_vm_flags_set(vma, VM_DONTCOPY);
	return remap_vmalloc_range(vma, ring_area, 0);
}

static __poll_t pfprof_dev_poll(struct file *file, poll_table *wait)
{
	poll_wait(file, &ring_wait, wait);
	if (smp_load_acquire(&ring_hdr->data_head) != READ_ONCE(ring_hdr->data_tail))
		return EPOLLIN | EPOLLRDNORM;
	return 0;
}

static const struct file_operations pfprof_fops = {
	.owner = THIS_MODULE,
	.open = pfprof_dev_open,
	.release = pfprof_dev_release,
	.mmap = pfprof_dev_mmap,
	.poll = pfprof_dev_poll,
};

static struct miscdevice pfprof_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "pfprof",
	.fops = &pfprof_fops,
	.mode = 0600,
};

int pfprof_ring_init(unsigned int pages, unsigned int interval_ms)
{
	ring_size = (size_t)pages << PAGE_SHIFT;
	ring_area = vmalloc_user(ring_size);	/* zeroed, mappable */
	if (!ring_area)
		return -ENOMEM;
	ring_hdr = ring_area;
	ring_slots = ring_area + PAGE_SIZE;
	ring_capacity = (ring_size - PAGE_SIZE) / sizeof(struct pfprof_record);
	ring_interval_ms = interval_ms;
	pfprof_ring_reset_header();
	return 0;
}

/* Safe to call whether or not pfprof_ring_init() ran or succeeded. */
void pfprof_ring_exit(void)
{
	vfree(ring_area);
	ring_area = NULL;
}

int pfprof_dev_init(void)
{
	int err = misc_register(&pfprof_misc);

	dev_registered = !err;
	return err;
}

/* Safe to call whether or not pfprof_dev_init() ran or succeeded. */
void pfprof_dev_exit(void)
{
	if (dev_registered)
		misc_deregister(&pfprof_misc);
	dev_registered = false;
}
