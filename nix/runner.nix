# microvm.nix runner for hlsvmm.
#
# microvm.nix builds its `microvm-run` script from a per-hypervisor file in
# its lib/runners/ (lib/runner.nix imports `./runners/${hypervisor}.nix` with
# { pkgs, microvmConfig, macvtapFds }). This file has that interface: install
# it as lib/runners/hlsvmm.nix of a microvm.nix checkout (or overlay) and set
# `microvm.hypervisor = "hlsvmm"`, with `pkgs.hlsvmm` providing bin/hlsvmm.
# It can also be imported directly to get the command for a config:
#
#   (import ./runner.nix { inherit pkgs; microvmConfig = config.microvm; }).command
#
# Mapping (microvm.nix option -> hlsvmm run flag):
#   mem, vcpu                      -> --mem MiB, --vcpus N
#   kernel, initrdPath, kernelParams -> --kernel K/bzImage, --initrd I, --cmdline "console=ttyS0 ..."
#   storeOnDisk + storeDisk        -> --disk STOREDISK,ro   (first disk: /dev/vda, label nix-store)
#   volumes                        -> --disk IMAGE[,ro]
#   shares (proto 9p)              -> --share SOURCE:TAG,ro (hlsvmm serves 9p read-only, e.g. ro-store)
#   interfaces type tap            -> --tap ID --mac MAC --vhost auto
#   interfaces type macvtap        -> --macvtap ID --mac MAC --vhost auto
#   (console)                      -> --serial tcp:127.0.0.1:17022 (attach with nc/telnet)
# Everything hlsvmm cannot do throws at evaluation time with the reason,
# rather than starting a VM that lacks what the configuration asked for.
{ pkgs
, microvmConfig
, macvtapFds ? { }
, hlsvmm ? pkgs.hlsvmm or (throw "hlsvmm runner: add an hlsvmm package to pkgs (overlay) or pass `hlsvmm`")
, serialPort ? 17022
, ...
}:

let
  inherit (pkgs) lib;
  inherit (microvmConfig)
    vcpu mem user interfaces volumes shares devices
    kernel initrdPath kernelParams storeDisk storeOnDisk;

  arg = lib.escapeShellArg;

  # 9p shares are served read-only; a share the guest expects to write to
  # must not silently become read-only.
  shareArgs = { proto, source, tag, ... }:
    if proto != "9p"
    then throw "hlsvmm runner: share ${tag}: only 9p shares are supported, not ${proto}"
    else if tag == "ro-store" || lib.hasPrefix "/nix/store" source
    then [ "--share" (arg "${source}:${tag},ro") ]
    else throw "hlsvmm runner: share ${tag} (${source}): hlsvmm serves only read-only 9p shares (ro-store)";

  interfaceArgs = { type, id, mac, ... }:
    if type == "tap"
    then [ "--tap" (arg id) "--mac" (arg mac) "--vhost" "auto" ]
    else if type == "macvtap"
    then [ "--macvtap" (arg id) "--mac" (arg mac) "--vhost" "auto" ]
    else throw "hlsvmm runner: interface ${id}: type ${type} is not supported (tap or macvtap)";

  volumeArgs = { image, readOnly ? false, ... }:
    [ "--disk" (arg "${image}${lib.optionalString readOnly ",ro"}") ];

  cmdline = "console=ttyS0 reboot=t panic=-1 ${toString kernelParams}";
in
{
  command =
    if user != null then throw "hlsvmm runner: hlsvmm does not change user (microvm.user)"
    else if devices != [ ] then throw "hlsvmm runner: device passthrough is not supported"
    else if builtins.length interfaces > 1 then throw "hlsvmm runner: one network interface at most"
    else lib.concatStringsSep " " (
      [
        "${hlsvmm}/bin/hlsvmm" "run"
        "--kernel" (arg "${kernel}/${pkgs.stdenv.hostPlatform.linux-kernel.target}")
        "--initrd" (arg initrdPath)
        "--cmdline" (arg (builtins.unsafeDiscardStringContext cmdline))
        "--mem" (toString mem)
        "--vcpus" (toString vcpu)
        "--serial" "tcp:127.0.0.1:${toString serialPort}"
      ]
      ++ lib.optionals storeOnDisk [ "--disk" (arg "${storeDisk},ro") ]
      ++ builtins.concatMap volumeArgs volumes
      ++ builtins.concatMap shareArgs shares
      ++ builtins.concatMap interfaceArgs interfaces
    );

  # hlsvmm has no control socket yet: systemd's SIGTERM stops it.
  canShutdown = false;
  shutdownCommand = throw "hlsvmm runner: no shutdown command (hlsvmm has no control socket; stop it with SIGTERM)";

  # hlsvmm does not send sd_notify READY=1.
  supportsNotifySocket = false;

  # hlsvmm opens TAPs by name, not inherited macvtap fds.
  requiresMacvtapAsFds = false;
}
