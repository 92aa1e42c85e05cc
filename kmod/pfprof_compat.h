/* SPDX-License-Identifier: GPL-2.0 */
/*
 * pfprof_compat.h - every kernel-version difference pfprof meets, in one
 * place, tested by feature rather than by version number (distributions
 * backport interfaces). Tested against Debian 6.1, 6.12 and 7.x headers.
 *
 * Macros are tested with #ifdef here; functions cannot be, so Kbuild greps
 * their declaration and passes -DPFPROF_HAVE_<NAME>.
 */
#ifndef PFPROF_COMPAT_H
#define PFPROF_COMPAT_H

#include <linux/mm.h>
#include <linux/timer.h>

/* vma->vm_flags became const in 6.3; vm_flags_set/clear() are the writers. */
#ifdef PFPROF_HAVE_VM_FLAGS_SET
#define pfprof_vm_flags_set(vma, flags)		vm_flags_set(vma, flags)
#define pfprof_vm_flags_clear(vma, flags)	vm_flags_clear(vma, flags)
#else
static inline void pfprof_vm_flags_set(struct vm_area_struct *vma, unsigned long flags)
{
	vma->vm_flags |= flags;
}

static inline void pfprof_vm_flags_clear(struct vm_area_struct *vma, unsigned long flags)
{
	vma->vm_flags &= ~flags;
}
#endif

/*
 * timer_delete()/timer_delete_sync() are used directly: every supported
 * kernel has them (6.2; Debian's 6.1 has them from 6.1.84 on; del_timer*()
 * are gone since 6.15), so no fallback is kept. A kernel without them fails
 * to build with a clear "implicit declaration" error rather than silently.
 */

/*
 * Not needed, on purpose: from_timer()/timer_container_of() (6.16) - the
 * module has one static timer; class_create() (6.4) - a misc device has no
 * class; thread_group_exited() (not in 6.12 headers) - pfprof_main.c tests
 * exit_state itself.
 */

#endif /* PFPROF_COMPAT_H */
