# frozen_string_literal: true
#
# The loopback-only libvirt layer of thrashlab's Vagrantfile (docs/vagrant.md).
#
#   python -m localvm box                      # once: the testbed image as a local box
#   export THRASHLAB_VAGRANT_LOOPBACK=1        # for every vagrant and ansible command after it
#   vagrant up                                 # the layer makes libvirt the provider
#   vagrant destroy -f                         # the VMs, their SSH ports and the storage pool
#
# For hosts that cannot (or may not) make bridges, tap devices or private
# networks: CI runners, containers, locked-down workstations. Every machine is
# a libvirt domain of the local box (python -m localvm box) that
#   - runs under KVM when localvm's probe found it usable this host boot, else
#     under TCG (software emulation; THRASHLAB_ACCEL=kvm|tcg overrides);
#   - has no management network (vagrant-libvirt's dnsmasq bridge is never
#     made, no libvirt network is started);
#   - is reached over SSH through a QEMU user-mode NIC (restricted: nothing but
#     the forward) whose only forward is 127.0.0.1:PORT -> guest port 22, PORT
#     chosen free for each machine at `vagrant up` and kept in
#     <state dir>/vagrant/ports.json until `vagrant destroy`;
#   - boots directly from the box's kernel and initrd;
#   - gets its hostname and root's authorized key (this checkout's own key,
#     <state dir>/vagrant/id_ed25519) through QEMU fw_cfg `string=` values
#     (the image's first-boot unit reads them, as for localvm's VMs): the box
#     holds no key, so one box serves every checkout and user, and libvirt's
#     QEMU user needs to read no file of the checkout (a `file=` value would);
#     its SSH host keys are made in the guest on first boot and pinned by the
#     Vagrantfile after `vagrant up`;
#   - keeps its disks in a libvirt storage pool of its own under
#     /var/tmp/thrashlab-vagrant-<uid>/<checkout id>/ (THRASHLAB_VAGRANT_LIBVIRT_DIR
#     moves it), made before the first `up` and removed, with the box's volume
#     and the staged kernel, when the last machine is destroyed.
#
# vagrant-libvirt 0.11 learns a guest's address only from a libvirt NIC (here
# through qemu-guest-agent), so each domain also has a libvirt `user` NIC
# (QEMU user-mode networking, nothing on the host; its `dev` is ignored by
# libvirt but must name a host interface to pass the plugin's validation).
# Vagrant itself always connects to 127.0.0.1:PORT.
#
# Environment: THRASHLAB_VAGRANT_LIBVIRT_URI (default qemu:///system),
# THRASHLAB_VAGRANT_LIBVIRT_DIR, THRASHLAB_ACCEL.

require "digest"
require "fileutils"
require "json"
require "socket"

module ThrashlabLoopback
  class Error < StandardError; end

  ROOT = File.expand_path("..", __dir__)
  STATE = defined?(::STATE_DIR) ? ::STATE_DIR : File.expand_path(ENV.fetch("THRASHLAB_STATE_DIR", File.join(ROOT, ".thrashlab")))
  DIR = File.join(STATE, "vagrant")
  KEY = File.join(DIR, "id_ed25519")
  PORTS = File.join(DIR, "ports.json")
  BOX_POINTER = File.join(DIR, "box.json")
  LIBVIRT_STATE = File.join(DIR, "libvirt.json") # what the layer made in libvirt, while it exists
  ACCEL_PROBE = File.join(STATE, "accel-probe.json") # written by localvm's KVM probe
  URI = ENV.fetch("THRASHLAB_VAGRANT_LIBVIRT_URI", "qemu:///system")
  # Vagrant's machines of this checkout live in its dotfile directory: one id per directory,
  # so that a second VAGRANT_DOTFILE_PATH (e.g. the test's) never meets the user's VMs.
  DOTFILE_DIR = File.expand_path(ENV.fetch("VAGRANT_DOTFILE_PATH", ".vagrant"), ROOT)
  CHECKOUT_ID = Digest::SHA256.hexdigest(DOTFILE_DIR)[0, 8]
  POOL = "thrashlab-#{CHECKOUT_ID}"
  DOMAIN_PREFIX = "thrashlab-#{CHECKOUT_ID}-"
  WORK = File.expand_path(ENV["THRASHLAB_VAGRANT_LIBVIRT_DIR"] ||
                          File.join("/var/tmp", "thrashlab-vagrant-#{Process.uid}", CHECKOUT_ID))
  POOL_DIR = File.join(WORK, "pool")
  # The box's own command line when it does not say (see localvm/box.py).
  DEFAULT_CMDLINE = "root=/dev/vda rw console=ttyS0 panic=-1 net.ifnames=1"
  # The SSH NIC's user-mode network: a reserved, non-private range, so that
  # it never shadows the libvirt NIC's (QEMU's default 10.0.2.0/24).
  SSH_NET = "198.18.0.0/24"
  SSH_NIC_PCI_SLOT = "0x10" # explicit: libvirt places its own devices on the low slots

  @ports = nil
  @box = nil

  # ---- called by the Vagrantfile --------------------------------------------------------------

  def self.configure(config, lab)
    box = self.box
    accel, why = accelerator
    @lab = lab
    # One box serves every machine: a lab that mixes suites needs localvm.
    others = lab["machines"].reject { |m| m["suite"] == box[:suite] }
    unless others.empty?
      abort "thrashlab: the loopback layer boots one box (#{box[:name]}, #{box[:suite]}); machine(s) " \
            "#{others.map { |m| m['name'] }.join(', ')} of #{lab['path']} want another suite: " \
            "use python -m localvm for a lab that mixes suites"
    end
    ensure_key
    # The layer is libvirt only: `vagrant up` needs no --provider.
    ENV["VAGRANT_DEFAULT_PROVIDER"] = "libvirt"

    config.vm.box = box[:name]
    config.vm.box_check_update = false
    config.vm.guest = :debian # saves the guest detection round trips
    config.ssh.host = "127.0.0.1"
    config.ssh.username = "root"
    config.ssh.private_key_path = [KEY]
    config.ssh.keys_only = true
    config.ssh.insert_key = false
    config.ssh.sudo_command = "%c" # root already; the box has no sudo

    # A libvirt NIC for the plugin to learn the guest's address through the agent
    # (see the top of this file); auto_config: the guest's own DHCP configures it.
    config.vm.network :public_network, type: "user", dev: host_interface, auto_config: false

    config.vm.provider "libvirt" do |lv|
      lv.uri = URI
      lv.driver = accel == "kvm" ? "kvm" : "qemu"
      if accel == "kvm"
        lv.cpu_mode = "host-passthrough"
      else
        lv.cpu_mode = "custom"
        lv.cpu_model = "qemu64"
      end
      lv.machine_type = "pc"
      lv.graphics_type = "none"
      lv.mgmt_attach = false
      lv.qemu_use_agent = true
      lv.channel type: "unix", target_name: "org.qemu.guest_agent.0", target_type: "virtio"
      lv.storage_pool_name = POOL
      lv.default_prefix = DOMAIN_PREFIX
      lv.disk_bus = "virtio"
      lv.kernel = File.join(boot_dir(box), "vmlinuz")
      lv.initrd = File.join(boot_dir(box), "initrd.img")
      lv.cmd_line = box[:cmdline]
      lv.memballoon_enabled = false # the guest's memory is what the lab file says, nothing reclaims it
      lv.random model: "random"
    end

    config.trigger.before :up do |t|
      t.info = "thrashlab loopback: #{accel == 'kvm' ? 'KVM' : 'TCG'} (#{why}); storage pool #{POOL} in #{POOL_DIR}"
      t.ruby { |_env, machine| before_up(machine) }
    end
    config.trigger.after :destroy do |t|
      t.info = "thrashlab loopback: releasing the SSH port; the pool goes with the last machine"
      t.ruby do |_env, machine|
        after_destroy(machine)
      rescue StandardError => e # the machine is gone already: say what is left, do not fail
        machine.ui.warn("thrashlab loopback: cleaning up after #{machine.name} failed: #{e.class}: #{e.message}")
      end
    end
  end

  def self.configure_machine(node, machine, _index)
    name = machine["name"]
    port = port_for(name)
    node.ssh.port = port
    node.vm.provider "libvirt" do |lv|
      lv.serial type: "file", source: { path: File.join(WORK, "serial-#{name}.log") }
      [
        "-netdev", "user,id=thrashlab-ssh,restrict=on,net=#{SSH_NET},hostfwd=tcp:127.0.0.1:#{port}-:22",
        "-device", JSON.generate({ "driver" => "virtio-net-pci", "netdev" => "thrashlab-ssh",
                                   "id" => "thrashlab-ssh-nic", "bus" => "pci.0", "addr" => SSH_NIC_PCI_SLOT }),
        "-fw_cfg", "name=opt/thrashlab/hostname,string=#{name}",
        "-fw_cfg", "name=opt/thrashlab/authorized_keys,string=#{public_key}",
      ].each { |arg| lv.qemuargs value: arg }
    end
  end

  # ---- the box, the accelerator, the key ------------------------------------------------------

  # The box that `python -m localvm box` added last, and where Vagrant keeps it.
  def self.box
    return @box if @box

    begin
      pointer = JSON.parse(File.read(BOX_POINTER))
      name = pointer.fetch("name")
    rescue Errno::ENOENT, JSON::ParserError, KeyError, TypeError
      name = nil
    end
    dir = name && File.join(Vagrant.user_data_path.to_s, "boxes", name.gsub("/", "-VAGRANTSLASH-"), "0", "libvirt")
    info = begin
      JSON.parse(File.read(File.join(dir, "thrashlab-box.json")))
    rescue StandardError
      nil
    end
    problem =
      if name.nil?
        "no box recorded in #{BOX_POINTER}"
      elsif info.nil?
        "box #{name} is not added to this Vagrant (#{Vagrant.user_data_path})"
      end
    @box = { name: name || "thrashlab/bookworm", dir: dir, key: info && info["image_key"],
             cmdline: (info && info["cmdline"]) || DEFAULT_CMDLINE, problem: problem,
             suite: (info && info["suite"]) || "bookworm" }
  end

  def self.boot_dir(box)
    File.join(WORK, "boot", box[:key] || "none")
  end

  # [accelerator, why]: THRASHLAB_ACCEL, else localvm's probe of this host boot, else TCG.
  def self.accelerator
    forced = ENV["THRASHLAB_ACCEL"].to_s.strip.downcase
    return [forced, "THRASHLAB_ACCEL"] if %w[kvm tcg].include?(forced)

    begin
      probe = JSON.parse(File.read(ACCEL_PROBE))
      boot_id = File.read("/proc/sys/kernel/random/boot_id").strip
      return [probe["accel"], probe["reason"].to_s] if probe["boot_id"] == boot_id && %w[kvm tcg].include?(probe["accel"])
    rescue StandardError
      # no probe this boot: TCG is always safe
    end
    ["tcg", "KVM not probed this host boot; `python -m localvm box` probes it"]
  end

  def self.ensure_key
    return if File.exist?(KEY) && File.exist?("#{KEY}.pub")

    FileUtils.mkdir_p(DIR, mode: 0o700)
    FileUtils.rm_f([KEY, "#{KEY}.pub"])
    ok = system("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "thrashlab-vagrant", "-f", KEY,
                out: File::NULL, err: File::NULL)
    raise Error, "thrashlab loopback: ssh-keygen could not make #{KEY}" unless ok
  end

  def self.public_key
    type, blob = File.read("#{KEY}.pub").split
    # fw_cfg's option syntax: no commas in the value (a key has none).
    "#{type} #{blob} thrashlab-vagrant"
  end

  # A host interface for the plugin's validation of the `user` NIC (libvirt ignores it).
  def self.host_interface
    names = Dir.children("/sys/class/net").sort rescue []
    names.find { |n| n != "lo" && !n.start_with?("virbr", "vnet", "docker", "macvtap") } || "eth0"
  end

  # ---- SSH ports ------------------------------------------------------------------------------

  def self.port_for(name)
    @ports ||= begin
      saved = read_ports
      # A saved port of a machine that has no domain yet may have been taken since.
      saved.reject { |n, p| !created?(n) && !port_free?(p) }
    end
    @ports[name] ||= free_port(@ports.values)
  end

  def self.created?(name)
    File.file?(File.join(DOTFILE_DIR, "machines", name, "libvirt", "id"))
  end

  def self.port_free?(port)
    TCPServer.new("127.0.0.1", port).close
    true
  rescue SystemCallError
    false
  end

  def self.free_port(taken)
    20.times do
      server = TCPServer.new("127.0.0.1", 0)
      port = server.addr[1]
      server.close
      return port unless taken.include?(port)
    end
    raise Error, "thrashlab loopback: no free TCP port on 127.0.0.1"
  end

  def self.read_ports
    data = JSON.parse(File.read(PORTS))
    data.is_a?(Hash) ? data.select { |_, p| p.is_a?(Integer) } : {}
  rescue Errno::ENOENT, JSON::ParserError
    {}
  end

  def self.update_ports
    FileUtils.mkdir_p(DIR, mode: 0o700)
    File.open("#{PORTS}.lock", File::RDWR | File::CREAT, 0o600) do |lock|
      lock.flock(File::LOCK_EX)
      data = yield read_ports
      tmp = "#{PORTS}.#{Process.pid}.tmp"
      File.write(tmp, "#{JSON.pretty_generate(data)}\n")
      File.rename(tmp, PORTS)
    end
  end

  # ---- libvirt: the pool, the staged kernel ---------------------------------------------------

  def self.libvirt
    require "libvirt"
    conn = Libvirt.open(URI)
    yield conn
  rescue Libvirt::ConnectionError => e
    raise Error, "thrashlab loopback: cannot connect to libvirt at #{URI} (#{e.message}); " \
                 "is libvirtd (or virtqemud) running and may this user use it?"
  ensure
    conn&.close
  end

  # /var/tmp/thrashlab-vagrant-<uid> must be ours: a directory, not a link, owned by this user.
  def self.ensure_work_dirs
    parent = File.dirname(WORK)
    [parent, WORK, POOL_DIR].each do |d|
      Dir.mkdir(d, 0o755) unless File.exist?(d) || File.symlink?(d)
      st = File.lstat(d)
      unless st.directory? && !st.symlink? && st.uid == Process.uid
        raise Error, "thrashlab loopback: #{d} is not a directory of user #{Process.uid}; " \
                     "remove it or set THRASHLAB_VAGRANT_LIBVIRT_DIR"
      end
      File.chmod(0o755, d) # libvirt's QEMU user reads the kernel and the disks below it
    end
  end

  def self.stage_boot_files(box)
    dir = boot_dir(box)
    FileUtils.mkdir_p(dir, mode: 0o755)
    %w[vmlinuz initrd.img].each do |f|
      src = File.join(box[:dir], f)
      dst = File.join(dir, f)
      next if File.exist?(dst) && File.size(dst) == File.size(src)

      FileUtils.cp(src, "#{dst}.tmp")
      File.chmod(0o644, "#{dst}.tmp")
      File.rename("#{dst}.tmp", dst)
    end
  end

  def self.ensure_pool(conn)
    pool = begin
      conn.lookup_storage_pool_by_name(POOL)
    rescue Libvirt::RetrieveError
      nil
    end
    unless pool
      xml = "<pool type='dir'><name>#{POOL}</name><target><path>#{POOL_DIR}</path></target></pool>"
      pool = conn.define_storage_pool_xml(xml)
    end
    pool.create unless pool.active?
    pool.refresh
    pool
  end

  # vagrant-libvirt uploads the box's disk into the pool through libvirt in
  # 250 KiB pieces (minutes under load); a local copy under the name it looks
  # for first takes seconds. Were the name ever different, the plugin would
  # simply upload as before.
  def self.stage_box_volume(pool, box, machine)
    src = File.join(box[:dir], "box.img")
    name = "#{box[:name].gsub('/', '-VAGRANTSLASH-')}_vagrant_box_image_0_#{File.mtime(src).to_i}_box.img"
    return if pool.list_volumes.include?(name)

    dst = File.join(POOL_DIR, name)
    machine.ui.info("thrashlab loopback: copying the box's disk into the pool")
    tmp = File.join(WORK, "box-volume.tmp") # same file system, outside the pool
    ok = system("cp", "--reflink=auto", "--sparse=always", src, tmp)
    raise Error, "thrashlab loopback: copying #{src} to #{tmp} failed" unless ok

    File.chmod(0o644, tmp)
    File.rename(tmp, dst)
    pool.refresh
  end

  def self.before_up(machine)
    box = self.box
    if box[:problem]
      raise Error, "thrashlab loopback: #{box[:problem]}; run `python -m localvm box` first " \
                   "(with the same VAGRANT_HOME), see docs/vagrant.md"
    end
    ensure_work_dirs
    stage_boot_files(box)
    libvirt do |conn|
      pool = ensure_pool(conn)
      stage_box_volume(pool, box, machine)
    end
    port = machine.config.ssh.port
    update_ports { |data| data.merge(machine.name.to_s => port) }
    File.write(LIBVIRT_STATE, "#{JSON.pretty_generate(
      'uri' => URI, 'pool' => POOL, 'pool_dir' => POOL_DIR, 'work_dir' => WORK,
      'domain_prefix' => DOMAIN_PREFIX, 'box' => box[:name],
    )}\n")
  end

  def self.after_destroy(machine)
    update_ports { |data| data.reject { |n, _| n == machine.name.to_s } }
    libvirt do |conn|
      ours = conn.list_all_domains.map(&:name).select { |n| n.start_with?(DOMAIN_PREFIX) }
      if ours.empty?
        remove_pool(conn)
        FileUtils.rm_rf(WORK)
        begin
          Dir.rmdir(File.dirname(WORK)) # /var/tmp/thrashlab-vagrant-<uid>, when no other checkout uses it
        rescue SystemCallError
          nil
        end
        FileUtils.rm_f(LIBVIRT_STATE)
        machine.ui.info("thrashlab loopback: no machine left; storage pool #{POOL} and #{WORK} removed")
      else
        machine.ui.info("thrashlab loopback: #{ours.size} domain(s) left (#{ours.join(', ')}); pool kept")
      end
    end
  end

  def self.remove_pool(conn)
    pool = begin
      conn.lookup_storage_pool_by_name(POOL)
    rescue Libvirt::RetrieveError
      return
    end
    if pool.active?
      pool.refresh
      # by name: the objects of list_all_volumes are broken in ruby-libvirt 0.7.1
      pool.list_volumes.each { |vol| pool.lookup_volume_by_name(vol).delete }
      pool.destroy
    end
    pool.undefine
  end
end
