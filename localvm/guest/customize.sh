#!/bin/sh
# mmdebstrap customize hook: turns the fresh root filesystem ($1) into a
# testbed guest. Runs on the host; the guest's own tools run via chroot.
set -eu
root=$1
here=$(dirname "$0")

echo "/dev/vda / ext4 rw,relatime,errors=remount-ro 0 1" > "$root/etc/fstab"
echo thrashlab > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tthrashlab\n' > "$root/etc/hosts"

install -m 644 "$here/20-wired.network" "$root/etc/systemd/network/20-wired.network"
install -m 644 "$here/sshd-thrashlab.conf" "$root/etc/ssh/sshd_config.d/thrashlab.conf"
install -m 755 "$here/thrashlab-firstboot.sh" "$root/usr/local/sbin/thrashlab-firstboot"
install -m 644 "$here/thrashlab-firstboot.service" "$root/etc/systemd/system/thrashlab-firstboot.service"

chroot "$root" systemctl enable systemd-networkd.service thrashlab-firstboot.service
# Nothing here needs network-online; waiting for it only slows the boot.
chroot "$root" systemctl mask systemd-networkd-wait-online.service
# Host keys are per VM (fw_cfg); never ship the ones made at package install.
rm -f "$root"/etc/ssh/ssh_host_*

# An unprivileged user, for the tests that a user may profile only their own processes.
chroot "$root" useradd --create-home --uid 1000 --shell /bin/bash student
# Root logs in by key only.
chroot "$root" passwd --lock root >/dev/null
