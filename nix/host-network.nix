# NixOS module: the host network for an hlsvmm VM, made by
# `hlsvmm network setup` (bridge + TAP + NAT + port forwards, or macvtap)
# in a oneshot unit ordered before the VM's unit and undone by
# `hlsvmm network teardown` when the unit stops.
#
#   imports = [ ./nix/host-network.nix ];
#   services.hlsvmm-network = {
#     enable = true;
#     package = pkgs.hlsvmm;
#     vmUnits = [ "microvm@hls.service" ];
#     forwards = [ "17080:17080" "17122:22" ];
#   };
{ config, lib, pkgs, ... }:

let
  cfg = config.services.hlsvmm-network;
  inherit (lib) mkOption mkEnableOption mkIf types escapeShellArgs optionals;

  flags =
    [ "--mode" cfg.mode "--state-dir" cfg.stateDir ]
    ++ (if cfg.mode == "bridge" then
      [ "--bridge" cfg.bridge "--tap" cfg.tap "--subnet" cfg.subnet "--gateway" cfg.gateway "--vm-ip" cfg.vmAddress ]
      ++ builtins.concatMap (f: [ "--forward" f ]) cfg.forwards
    else
      [ "--link" cfg.link "--macvtap" cfg.macvtap "--macvtap-mode" cfg.macvtapMode ])
    ++ optionals (cfg.user != null) [ "--user" cfg.user ];

  hlsvmm = "${cfg.package}/bin/hlsvmm";
in
{
  options.services.hlsvmm-network = {
    enable = mkEnableOption "the host network for hlsvmm VMs";

    package = mkOption {
      type = types.package;
      description = "Package providing bin/hlsvmm.";
    };

    mode = mkOption {
      type = types.enum [ "bridge" "macvtap" ];
      default = "bridge";
      description = "bridge: TAP on a bridge with NAT and port forwards; macvtap: the guest shares a host NIC.";
    };

    bridge = mkOption { type = types.str; default = "hlsbr0"; description = "Bridge name (bridge mode)."; };
    tap = mkOption { type = types.str; default = "hlstap0"; description = "TAP name (bridge mode); the VM's --tap."; };
    subnet = mkOption { type = types.str; default = "10.177.0.0/24"; description = "VM subnet, IPv4 prefix."; };
    gateway = mkOption { type = types.str; default = "10.177.0.1"; description = "Host address on the bridge."; };
    vmAddress = mkOption { type = types.str; default = "10.177.0.10"; description = "The VM's address (forward target)."; };

    forwards = mkOption {
      type = types.listOf (types.strMatching "[0-9]+:[0-9]+");
      default = [ "17080:17080" "17100:9100" "17113:9113" "17122:22" ];
      description = "TCP port forwards HOST:GUEST from the host to the VM (bridge mode).";
    };

    link = mkOption { type = types.str; default = ""; description = "Host NIC the macvtap sits on (macvtap mode)."; };
    macvtap = mkOption { type = types.str; default = "hlsmvt0"; description = "macvtap name (macvtap mode)."; };
    macvtapMode = mkOption { type = types.enum [ "bridge" "private" "vepa" ]; default = "bridge"; description = "macvtap mode."; };

    user = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "microvm";
      description = "Owner of the TAP/macvtap as UID[:GID] or a name, so an unprivileged VM process can open it.";
    };

    stateDir = mkOption {
      type = types.str;
      default = "/run/hlsvmm-network";
      description = "Where setup records what it made, for teardown.";
    };

    vmUnits = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "microvm@hls.service" ];
      description = "Units of the VMs: they require this network and start after it.";
    };
  };

  config = mkIf cfg.enable {
    assertions = [{
      assertion = cfg.mode != "macvtap" || cfg.link != "";
      message = "services.hlsvmm-network: macvtap mode needs `link` (the host NIC).";
    }];

    systemd.services.hlsvmm-network = {
      description = "hlsvmm host network (${cfg.mode})";
      wantedBy = [ "multi-user.target" ];
      after = [ "network.target" ];
      before = cfg.vmUnits;
      requiredBy = cfg.vmUnits;
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = "${hlsvmm} network setup ${escapeShellArgs flags}";
        ExecStop = "${hlsvmm} network teardown ${escapeShellArgs flags}";
      };
    };
  };
}
