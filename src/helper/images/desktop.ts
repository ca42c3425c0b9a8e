/**
 * What debian-12-desktop adds to debian-12: Xorg with the modesetting driver rendering in
 * software, twm and xterm, started by a login on tty1 (the console `create --autologin`
 * logs the user in on), and a watcher in the session that applies the display's preferred
 * mode whenever the host changes it. docs/display.md "Desktop image" says why these.
 */

export const DESKTOP_PACKAGES: readonly string[] = [
  // the X server (its modesetting driver drives virtio-gpu) and its input driver, which
  // takes the usb-tablet's absolute pointer and the PS/2 keyboard from udev
  'xserver-xorg-core', 'xserver-xorg-input-libinput',
  // startx, and xrandr to apply a new preferred mode (the server does not by itself)
  'xinit', 'x11-xserver-utils',
  // the session: the smallest window manager that works with Debian's Xsession, and a terminal
  'twm', 'xterm',
];

/*
 * Runs inside the customize hook after BASE_CONFIGURE ($R is the tree), before the initramfs.
 * Xsession (from x11-common) still runs around the session, so ~/.xsession and a desktop the
 * user installs later (a higher x-session-manager priority) take over from devvm's.
 */
export const DESKTOP_HOOK = `
echo "devvm: configuring the desktop"
mkdir -p "$R/etc/X11/xorg.conf.d"
cat > "$R/etc/X11/xorg.conf.d/20-devvm.conf" <<'EOF'
# devvm: virtio-gpu has no 3D here (QEMU runs it without virgl, the CPU may be emulated):
# modesetting without glamor renders in software into a shadow framebuffer.
Section "Device"
    Identifier "devvm-virtio-gpu"
    Driver "modesetting"
    Option "AccelMethod" "none"
EndSection
# A VM's screen is looked at through a viewer: never blank it.
Section "ServerFlags"
    Option "BlankTime" "0"
    Option "StandbyTime" "0"
    Option "SuspendTime" "0"
    Option "OffTime" "0"
EndSection
EOF

mkdir -p "$R/usr/local/lib/devvm"
cat > "$R/usr/local/lib/devvm/display-follow" <<'EOF'
#!/bin/sh
# Runs in the X session. The host resizes the display by changing the preferred mode of
# virtio-gpu's connector (the kernel reports a drm "change" uevent); X lists the new mode
# but keeps the old one until a client sets it: "xrandr --output NAME --auto" does,
# growing the screen when needed (a bare "xrandr --auto" leaves an enabled output's mode
# as it is). The output names are kept from the last listing (about 0.4 s less per resize
# under emulation). Each change is applied twice: at the kernel's event, the fast path,
# and at udev's for the same change 0.2-0.4 s later, because a probe right at the
# kernel's event sometimes still found the old mode (seen on the first resize after X
# started) and nothing reports the change again. Ends at the first event after the X
# server has gone; the session also ends it.
list() {
  screen=$(xrandr --current 2>/dev/null) || exit 0
  outputs=$(printf '%s\\n' "$screen" | sed -n 's/^\\([^ ]*\\) connected.*/\\1/p')
}
apply() {
  set --
  for o in $outputs; do set -- "$@" --output "$o" --auto; done
  [ $# -gt 0 ] && xrandr "$@" >/dev/null 2>&1
}
fit() {
  apply || { list; apply; }
}
list
apply
udevadm monitor --kernel --udev --subsystem-match=drm 2>/dev/null | while read -r line; do
  case "$line" in
    *" change "*) fit ;;
  esac
done
EOF
chmod 755 "$R/usr/local/lib/devvm/display-follow"

cat > "$R/usr/local/lib/devvm/twmrc" <<'EOF'
# devvm: new windows are placed, not dragged out by hand; click the desktop for the menu.
# Every font is the server's built-in "fixed": the image has no core font packages, and
# twm exits when one it wants (IconManagerFont defaults to "variable") is missing.
RandomPlacement
NoGrabServer
DecorateTransients
TitleFont "fixed"
MenuFont "fixed"
IconFont "fixed"
ResizeFont "fixed"
IconManagerFont "fixed"
Color { BorderColor "gray40" TitleBackground "gray20" TitleForeground "white" MenuBackground "gray90" MenuForeground "black" MenuTitleBackground "gray20" MenuTitleForeground "white" }
Button1 = : root : f.menu "devvm"
Button3 = : root : f.menu "devvm"
Button1 = : title : f.move
Button2 = : title : f.raiselower
menu "devvm" {
  "devvm" f.title
  "Terminal" f.exec "exec xterm -fa Monospace -fs 11 &"
  "Refresh" f.refresh
  "Restart twm" f.restart
  "Log out" f.quit
}
EOF

cat > "$R/usr/local/lib/devvm/session" <<'EOF'
#!/bin/sh
# devvm's default X session: the display watcher, a terminal, and twm (the session ends
# when twm does).
/usr/local/lib/devvm/display-follow &
follow=$!
xsetroot -solid '#2e3440' 2>/dev/null
xterm -fa Monospace -fs 11 -geometry 100x30+24+24 &
twm -f /usr/local/lib/devvm/twmrc
# The watcher is no X client, so X going away does not end it: it and its udevadm would
# otherwise wait for the next event, and then act on the next session's X.
pkill -P "$follow" 2>/dev/null
kill "$follow" 2>/dev/null
EOF
chmod 755 "$R/usr/local/lib/devvm/session"
chroot "$R" update-alternatives --quiet --install /usr/bin/x-session-manager x-session-manager /usr/local/lib/devvm/session 10

# The first console logs in the user "create --autologin" logs in on the serial console
# (the seed's drop-in for serial-getty@ttyS0 names them, see provision.ts), so the session
# starts by itself; without that drop-in tty1 shows a login prompt as usual.
cat > "$R/usr/local/lib/devvm/tty1-getty" <<'EOF'
#!/bin/sh
# getty@tty1's command: agetty, with --autologin for the serial console's autologin user if any.
user=$(sed -n 's/^ExecStart=-\\/sbin\\/agetty --autologin \\([a-z_][a-z0-9_-]*\\) .*/\\1/p' /etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf 2>/dev/null | head -n 1)
if [ -n "$user" ]; then
  exec /sbin/agetty --noclear --autologin "$user" - "$TERM"
fi
# as getty@.service runs it (-p: keep the environment, the user name from the prompt)
exec /sbin/agetty -o '-p -- \\u' --noclear - "$TERM"
EOF
chmod 755 "$R/usr/local/lib/devvm/tty1-getty"
mkdir -p "$R/etc/systemd/system/getty@tty1.service.d"
cat > "$R/etc/systemd/system/getty@tty1.service.d/devvm-autologin.conf" <<'EOF'
[Service]
ExecStart=
ExecStart=-/usr/local/lib/devvm/tty1-getty
EOF

cat > "$R/etc/profile.d/devvm-desktop.sh" <<'EOF'
# devvm: a login on the first console (the one "create --autologin" logs the user in on)
# starts the graphical session; when it ends, this shell carries on. Nothing happens for
# root, over SSH, on the serial console, or without a display device.
if [ -z "\${DISPLAY:-}" ] && [ "$(id -u)" != 0 ] && [ "$(tty 2>/dev/null)" = /dev/tty1 ]; then
  [ -e /dev/dri/card0 ] || udevadm settle --timeout=15 2>/dev/null
  if [ -e /dev/dri/card0 ]; then
    startx
    echo "devvm: the graphical session ended (log: ~/.local/share/xorg/Xorg.0.log); run startx to start it again"
  fi
fi
EOF
`;
