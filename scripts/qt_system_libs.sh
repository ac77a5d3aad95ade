#!/usr/bin/env bash
# Install the system libraries Qt needs to show a window on a Debian/Ubuntu desktop, if any is missing.
# README's Quick start command 1 runs this first. It installs nothing when everything is there, and on
# other systems (or without root/sudo) it prints what to install and lets the app start anyway.
set -u
declare -A pkg=(
  [libEGL.so.1]=libegl1 [libGL.so.1]=libgl1 [libfontconfig.so.1]=libfontconfig1 [libxkbcommon.so.0]=libxkbcommon0
  [libdbus-1.so.3]=libdbus-1-3 [libglib-2.0.so.0]=libglib2.0-0 [libxcb-cursor.so.0]=libxcb-cursor0
  [libxcb-icccm.so.4]=libxcb-icccm4 [libxcb-keysyms.so.1]=libxcb-keysyms1 [libxcb-image.so.0]=libxcb-image0
  [libxcb-render-util.so.0]=libxcb-render-util0 [libxcb-xinerama.so.0]=libxcb-xinerama0
  [libxcb-randr.so.0]=libxcb-randr0 [libxcb-shape.so.0]=libxcb-shape0 [libxcb-xkb.so.1]=libxcb-xkb1
  [libxkbcommon-x11.so.0]=libxkbcommon-x11-0
)
command -v ldconfig >/dev/null 2>&1 || exit 0   # not Linux with a dynamic loader cache: nothing to check
missing=()
for lib in "${!pkg[@]}"; do
  ldconfig -p | grep -q "$lib" || missing+=("${pkg[$lib]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "Qt needs these libraries (Debian names): ${missing[*]}; install them with your package manager." >&2
  exit 0
fi
sudo=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo="sudo"
if [ "$(id -u)" -ne 0 ] && [ -z "$sudo" ]; then
  echo "Qt needs: apt-get install ${missing[*]} (run it as root)" >&2
  exit 0
fi
echo "installing Qt's system libraries: ${missing[*]}" >&2
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null || \
  echo "could not install ${missing[*]}; the window may not open" >&2
exit 0
