#!/bin/sh
# Per-VM identity, handed in by the host through QEMU's fw_cfg so that one
# cached base image serves every VM: hostname, root's authorized key and the
# SSH host key that the host has already pinned in its known_hosts.
# Without fw_cfg (e.g. a Vagrant box) it only makes sure host keys exist.
set -eu
FW=/sys/firmware/qemu_fw_cfg/by_name/opt/thrashlab
modprobe qemu_fw_cfg 2>/dev/null || true

if [ -r "$FW/hostname/raw" ]; then
    name=$(cat "$FW/hostname/raw")
    echo "$name" > /etc/hostname
    hostname "$name"
    sed -i "s/^127\.0\.1\.1.*/127.0.1.1\t$name/" /etc/hosts
fi
if [ -r "$FW/authorized_keys/raw" ]; then
    install -d -m 700 /root/.ssh
    install -m 600 "$FW/authorized_keys/raw" /root/.ssh/authorized_keys
fi
if [ -r "$FW/ssh_host_ed25519_key/raw" ]; then
    rm -f /etc/ssh/ssh_host_*
    install -m 600 "$FW/ssh_host_ed25519_key/raw" /etc/ssh/ssh_host_ed25519_key
    ssh-keygen -y -f /etc/ssh/ssh_host_ed25519_key > /etc/ssh/ssh_host_ed25519_key.pub
fi
# sshd refuses to start without any host key.
ls /etc/ssh/ssh_host_*_key >/dev/null 2>&1 || ssh-keygen -A
