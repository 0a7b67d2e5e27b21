# Evaluates runner.nix against a stub pkgs/lib and a microvm.nix-shaped
# config (no nixpkgs needed): `nix-instantiate --eval nix/runner-test.nix`.
let
  lib = {
    escapeShellArg = s: "'" + builtins.replaceStrings ["'"] ["'\\''"] (toString s) + "'";
    concatStringsSep = builtins.concatStringsSep;
    optionals = c: l: if c then l else [];
    optionalString = c: s: if c then s else "";
    hasPrefix = p: s: builtins.substring 0 (builtins.stringLength p) s == p;
  };
  pkgs = { inherit lib; hlsvmm = "/pkg/hlsvmm"; stdenv.hostPlatform.linux-kernel.target = "bzImage"; };
  r = import ./runner.nix { inherit pkgs; microvmConfig = {
    vcpu = 2; mem = 2048; user = null; devices = []; kernel = "/k"; initrdPath = "/i/initrd";
    kernelParams = [ "init=/nix/store/x/init" "regInfo=/r" ]; storeDisk = "/s/store.erofs"; storeOnDisk = true;
    volumes = [ { image = "var.img"; } ];
    shares = [ { proto = "9p"; source = "/nix/store"; tag = "ro-store"; } ];
    interfaces = [ { type = "tap"; id = "hlstap0"; mac = "02:00:00:01:01:01"; } ];
  }; };
in
assert r.command == "/pkg/hlsvmm/bin/hlsvmm run --kernel '/k/bzImage' --initrd '/i/initrd' --cmdline 'console=ttyS0 reboot=t panic=-1 init=/nix/store/x/init regInfo=/r' --mem 2048 --vcpus 2 --serial tcp:127.0.0.1:17022 --disk '/s/store.erofs,ro' --disk 'var.img' --share '/nix/store:ro-store,ro' --tap 'hlstap0' --mac '02:00:00:01:01:01' --vhost auto";
assert !r.canShutdown && !r.supportsNotifySocket;
"ok"
