// SPDX-License-Identifier: GPL-2.0
/*
 * pfprof_proc.c - /proc/pfprof/status (register, unregister, list) and
 * /proc/pfprof/stats (key value lines).
 *
 * A status write is one whole command, parsed strictly like the triggers of
 * kernel/sched/psi.c: at most PFPROF_CMD_MAX bytes, NUL-terminated copy,
 *   [blanks] ('R'|'U') blank+ digits [blanks]     blank: space, tab, newline
 * with 1 <= pid <= INT_MAX. Anything else is EINVAL and changes nothing.
 */
#include <linux/ctype.h>
#include <linux/kernel.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>
#include <linux/string.h>
#include <linux/uaccess.h>

#include "pfprof_internal.h"

static struct proc_dir_entry *pfprof_dir;

static bool pfprof_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n';
}

static int pfprof_parse(char *buf, size_t len, char *cmd, int *nr)
{
	char *s = buf, *end = buf + len, *d;

	if (strnlen(buf, len) != len)		/* embedded NUL */
		return -EINVAL;
	while (end > s && pfprof_blank(end[-1]))
		*--end = '\0';
	while (pfprof_blank(*s))
		s++;
	if (*s != 'R' && *s != 'U')
		return -EINVAL;
	*cmd = *s++;
	if (*s != ' ' && *s != '\t')
		return -EINVAL;
	while (*s == ' ' || *s == '\t')
		s++;
	if (!*s)
		return -EINVAL;
	for (d = s; *d; d++)			/* no sign, no base prefix */
		if (!isdigit(*d))
			return -EINVAL;
	if (kstrtoint(s, 10, nr) || *nr <= 0)	/* overflow is -ERANGE: EINVAL too */
		return -EINVAL;
	return 0;
}

static ssize_t status_write(struct file *file, const char __user *ubuf,
			    size_t count, loff_t *ppos)
{
	char buf[PFPROF_CMD_MAX + 1];
	char cmd;
	int nr, err;

	if (count == 0 || count > PFPROF_CMD_MAX)
		return -EINVAL;
	if (copy_from_user(buf, ubuf, count))
		return -EFAULT;
	buf[count] = '\0';
	err = pfprof_parse(buf, count, &cmd, &nr);
	if (!err)
		err = cmd == 'R' ? pfprof_register(file, nr) : pfprof_unregister(file, nr);
	return err ? err : count;
}

static int status_show(struct seq_file *m, void *v)
{
	pfprof_show_status(m);
	return 0;
}

static int status_open(struct inode *inode, struct file *file)
{
	return single_open(file, status_show, NULL);
}

static const struct proc_ops status_ops = {
	.proc_open = status_open,
	.proc_read = seq_read,
	.proc_lseek = seq_lseek,
	.proc_release = single_release,
	.proc_write = status_write,
};

static int stats_show(struct seq_file *m, void *v)
{
	pfprof_show_stats(m);
	return 0;
}

/*
 * status last: it is what starts the registrations (and the timer). On
 * failure the caller's teardown calls pfprof_proc_exit().
 */
int pfprof_proc_init(void)
{
	pfprof_dir = proc_mkdir("pfprof", NULL);
	if (!pfprof_dir)
		return -ENOMEM;
	if (!proc_create_single("stats", 0444, pfprof_dir, stats_show))
		return -ENOMEM;
	/* World-writable like the classic lab: the permission check is per pid. */
	if (!proc_create("status", 0666, pfprof_dir, &status_ops))
		return -ENOMEM;
	return 0;
}

/* Safe to call whether or not pfprof_proc_init() ran or succeeded. */
void pfprof_proc_exit(void)
{
	proc_remove(pfprof_dir);	/* waits for operations in progress; NULL is fine */
	pfprof_dir = NULL;
}
