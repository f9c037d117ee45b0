/**
 * The desktop part of the miosa-desktop template: an X server that is also a
 * VNC server (TigerVNC's Xvnc), Xfce with its terminal and file manager,
 * Firefox, and the fonts and X tools they want. Installed with apt-get into
 * the freshly bootstrapped root (parallel downloads, one dependency
 * resolution) after the base setup, as its own step of the recipe so the
 * base and the desktop change independently. The desktop daemon that drives
 * all this is not here: it lives with the guest agent (guest/hangar_desktop),
 * on the computer's read-only guest mount.
 */
import type { ProgressFn } from '../driver.ts';

export const DESKTOP_PACKAGES = [
  // X server + VNC server in one process; the daemon speaks X and VNC viewers speak RFB to it.
  'tigervnc-standalone-server',
  // The desktop: session, window manager, panel, desktop, settings, file manager; its terminal and editor.
  'xfce4', 'xfce4-terminal', 'mousepad', 'dbus-x11',
  // A browser, and the terminal agents and scripts reach for.
  'firefox-esr', 'xterm',
  // Fonts for Latin, Greek, Cyrillic and CJK text; an icon theme for the panel and file manager.
  'fonts-dejavu-core', 'fonts-wqy-microhei', 'adwaita-icon-theme',
  // Keyboard layouts (setxkbmap), xrandr/xset, xdotool and xclip for people's own scripts.
  'x11-xkb-utils', 'x11-xserver-utils', 'xauth', 'xdotool', 'xclip',
];

/**
 * Runs in the root after the packages: defaults for every user's Xfce. No
 * compositing (a software compositor costs CPU on every frame of a VNC
 * desktop); no screen saver or locker (a desktop driven by a program must
 * not blank).
 */
export const DESKTOP_SETUP = `set -eu
conf=/etc/xdg/xfce4/xfconf/xfce-perchannel-xml
mkdir -p "$conf"
cat > "$conf/xfwm4.xml" <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<channel name="xfwm4" version="1.0">
  <property name="general" type="empty">
    <property name="use_compositing" type="bool" value="false"/>
  </property>
</channel>
XML
cat > "$conf/xfce4-screensaver.xml" <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<channel name="xfce4-screensaver" version="1.0">
  <property name="saver" type="empty">
    <property name="enabled" type="bool" value="false"/>
  </property>
  <property name="lock" type="empty">
    <property name="enabled" type="bool" value="false"/>
  </property>
</channel>
XML
for f in xscreensaver light-locker xfce4-power-manager xfce4-screensaver; do
  if [ -f "/etc/xdg/autostart/$f.desktop" ]; then echo 'Hidden=true' >> "/etc/xdg/autostart/$f.desktop"; fi
done
# Firefox opens the page it is given: no welcome tabs, default-browser prompts or telemetry.
mkdir -p /usr/lib/firefox-esr/distribution
cat > /usr/lib/firefox-esr/distribution/policies.json <<'JSON'
{"policies": {"OverrideFirstRunPage": "", "OverridePostUpdatePage": "", "DontCheckDefaultBrowser": true,
  "DisableTelemetry": true, "DisableFirefoxStudies": true, "NoDefaultBookmarks": false,
  "UserMessaging": {"WhatsNew": false, "ExtensionRecommendations": false, "FeatureRecommendations": false, "UrlbarInterventions": false, "SkipOnboarding": true, "MoreFromMozilla": false}}}
JSON
`;

export interface DesktopRecipe {
  packages: string[];
  setup: string;
}

export function desktopRecipe(): DesktopRecipe {
  return { packages: DESKTOP_PACKAGES, setup: DESKTOP_SETUP };
}

/** Runs a shell script inside the template root being built, with each output line. */
export type RootRunner = (script: string, onLine: (line: string) => void) => Promise<string>;

/**
 * Installs the desktop into the root, reporting apt's progress as fractions
 * between `from` and `to` (downloads, unpacking and configuration of each
 * package count one third each).
 */
export async function installDesktop(run: RootRunner, recipe: DesktopRecipe, onProgress: ProgressFn, from: number, to: number): Promise<void> {
  let total = 0;
  let steps = 0;
  const report = (line: string) => {
    const planned = /^(\d+) upgraded, (\d+) newly installed/.exec(line);
    if (planned) total = Number(planned[1]) + Number(planned[2]);
    if (/^(Get:\d+ |Unpacking |Setting up )/.test(line)) steps++;
    const done = total > 0 ? Math.min(1, steps / (3 * total)) : 0;
    onProgress({ phase: 'template', message: `desktop: ${line}`, fraction: Math.round((from + (to - from) * done) * 100) / 100 });
  };
  onProgress({ phase: 'template', message: `installing the desktop (${recipe.packages.length} packages and their dependencies)`, fraction: from });
  await run(
    `set -eu
apt-get install -y --no-install-recommends -o Dpkg::Use-Pty=0 -o APT::Color=0 ${recipe.packages.join(' ')}
${recipe.setup}
apt-get clean
rm -rf /tmp/* /var/tmp/*
`,
    report,
  );
}
