import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DevvmError } from '../../src/shared/errors';
import { MmdebstrapProgress } from '../../src/helper/images/progress';
import { canonicalJson, recipeHash } from '../../src/helper/images/recipe';
import { DEBIAN_12_RECIPE } from '../../src/helper/images/recipes';
import { debianSources, parseAptSources } from '../../src/helper/images/sources';

const clone = () => structuredClone(DEBIAN_12_RECIPE);

test('recipe hash: 16 hex chars, stable across calls and key order', () => {
  const h = recipeHash(DEBIAN_12_RECIPE);
  assert.match(h, /^[0-9a-f]{16}$/);
  assert.equal(recipeHash(DEBIAN_12_RECIPE), h);
  const reordered = Object.fromEntries(Object.entries(clone()).reverse()) as typeof DEBIAN_12_RECIPE;
  assert.equal(recipeHash(reordered), h);
  assert.equal(canonicalJson({ b: 1, a: [2, { d: 3, c: 4 }] }), '{"a":[2,{"c":4,"d":3}],"b":1}');
});

test('the plain debian-12 recipe is pinned: its hash names every cached build, and the desktop recipe must not change it', () => {
  // Changing this on purpose rebuilds every user's debian-12 image: only with a reason
  // (last: session 12, an SSH login without update-motd.d's scripts and the mail check, qemu-ga's info lines kept out of the journal).
  assert.equal(recipeHash(DEBIAN_12_RECIPE), '3f6100eea2dcb44b');
});

test('recipe hash: changes with everything that shapes the image', () => {
  const h = recipeHash(DEBIAN_12_RECIPE);
  const variants: Array<(r: ReturnType<typeof clone>) => void> = [
    (r) => r.packages.push('vim-tiny'),
    (r) => r.packages.reverse(), // order reaches mmdebstrap's --include as given
    (r) => (r.suite = 'trixie'),
    (r) => (r.customizeHook += '\n# a comment is still a change\n'),
    (r) => (r.essentialHook = r.essentialHook.replace('true', 'false')),
    (r) => (r.diskSizeBytes *= 2),
    (r) => (r.formatVersion += 1),
    (r) => (r.security = false),
    (r) => r.mkfsOptions.push('-m', '1'),
  ];
  const seen = new Set([h]);
  for (const change of variants) {
    const r = clone();
    change(r);
    const v = recipeHash(r);
    assert.ok(!seen.has(v), `hash unchanged or colliding for ${change.toString()}`);
    seen.add(v);
  }
});

test('the recipe keeps what the guest needs', () => {
  for (const p of ['cloud-init', 'openssh-server', 'linux-image-amd64', 'ifupdown', 'isc-dhcp-client', 'e2fsprogs', 'qemu-guest-agent']) {
    assert.ok(DEBIAN_12_RECIPE.packages.includes(p), p);
  }
  assert.match(DEBIAN_12_RECIPE.customizeHook, /\/dev\/vda \/ ext4 defaults 0 1/);
  assert.match(DEBIAN_12_RECIPE.customizeHook, /source \/etc\/network\/interfaces\.d\/\*/);
  assert.match(DEBIAN_12_RECIPE.customizeHook, /rm -f .*ssh_host_\*/);
  assert.equal(DEBIAN_12_RECIPE.diskSizeBytes, 4 * 1024 ** 3);
});

const DEB822_HOST = `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
# http://snapshot.debian.org/archive/debian-security/20250520T000000Z
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
`;

const recipe = { suite: 'bookworm', components: ['main'], updates: true, security: true };

test('mirror: deb822 host config (this machine) gives main, updates and security', () => {
  const s = debianSources(recipe, [{ name: 'debian.sources', text: DEB822_HOST }]);
  assert.equal(s.origin, 'host');
  assert.deepEqual(s.entries, [
    'deb http://deb.debian.org/debian bookworm main',
    'deb http://deb.debian.org/debian bookworm-updates main',
    'deb http://deb.debian.org/debian-security bookworm-security main',
  ]);
});

test('mirror: one-line sources.list with options, comments and deb-src', () => {
  const text = `# deb http://commented.example/debian bookworm main
deb-src http://src.example/debian bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://ftp.de.debian.org/debian/ trixie main contrib non-free-firmware
deb http://ftp.de.debian.org/debian/ trixie-updates main
deb http://security.debian.org/debian-security trixie-security main # trailing comment
`;
  const parsed = parseAptSources([{ name: 'sources.list', text }]);
  assert.deepEqual(parsed[0], { uri: 'http://ftp.de.debian.org/debian/', suites: ['trixie'], components: ['main', 'contrib', 'non-free-firmware'] });
  assert.equal(parsed.length, 3);
  // A trixie host still builds bookworm, from its own mirror; the trailing slash goes.
  assert.deepEqual(debianSources(recipe, [{ name: 'sources.list', text }]).entries, [
    'deb http://ftp.de.debian.org/debian bookworm main',
    'deb http://ftp.de.debian.org/debian bookworm-updates main',
    'deb http://security.debian.org/debian-security bookworm-security main',
  ]);
});

test('mirror: third-party repos, disabled entries, cdrom and Ubuntu are skipped', () => {
  const files = [
    { name: 'sources.list', text: 'deb cdrom:[Debian GNU/Linux 12]/ bookworm main\ndeb http://archive.ubuntu.com/ubuntu jammy main restricted\n' },
    { name: 'nodesource.sources', text: 'Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\nComponents: main\n' },
    { name: 'off.sources', text: 'Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n' },
    { name: 'contrib-only.list', text: 'deb http://contrib.example/debian bookworm contrib\n' },
    { name: 'z-mirror.sources', text: 'Types: deb deb-src\nURIs: https://mirror.example.org/debian\nSuites: stable\nComponents: main\nSigned-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n xyz\n -----END PGP PUBLIC KEY BLOCK-----\n' },
  ];
  const s = debianSources(recipe, files);
  assert.equal(s.origin, 'host');
  // no -updates and no security entry on this host: only the release suite
  assert.deepEqual(s.entries, ['deb https://mirror.example.org/debian bookworm main']);
});

test('mirror: nothing usable falls back to deb.debian.org; the env override wins alone', () => {
  const none = debianSources(recipe, []);
  assert.equal(none.origin, 'default');
  assert.deepEqual(none.entries, [
    'deb http://deb.debian.org/debian bookworm main',
    'deb http://deb.debian.org/debian bookworm-updates main',
    'deb http://deb.debian.org/debian-security bookworm-security main',
  ]);
  const env = debianSources(recipe, [{ name: 'debian.sources', text: DEB822_HOST }], ' http://127.0.0.1:3142/debian/ ');
  assert.deepEqual(env, { entries: ['deb http://127.0.0.1:3142/debian bookworm main'], origin: 'env' });
  assert.equal(debianSources(recipe, [], '').origin, 'default');
  assert.throws(() => debianSources(recipe, [], 'not a url'), (e: unknown) => e instanceof DevvmError && e.code === 'invalid-argument');
  assert.throws(() => debianSources(recipe, [], 'http://x/debian bookworm main\ndeb http://evil'), DevvmError);
});

test('mirror: recipe flags turn updates and security off', () => {
  const s = debianSources({ ...recipe, updates: false, security: false }, [{ name: 'debian.sources', text: DEB822_HOST }]);
  assert.deepEqual(s.entries, ['deb http://deb.debian.org/debian bookworm main']);
});

test('progress: mmdebstrap stages and package counts give rising fractions', () => {
  const seen: Array<[string, number]> = [];
  const p = new MmdebstrapProgress((m, f) => seen.push([m, f]));
  p.feed('I: running apt-get update...\nGet:1 http://x InRelease\nI: downloading packages with apt...\n0 upgraded, 4 newly installed, 0 to remove\n');
  p.feed('Get:1 a\nGet:2 b\nGe');
  p.feed('t:3 c\nGet:4 d\nI: extracting archives...\nI: installing essential packages...\n');
  // the essential stage prints no count of its own: the download stage's 4 packages apply
  const before = seen.length;
  p.feed('Unpacking a (1) ...\nSetting up a (1) ...\nUnpacking b (1) ...\nSetting up b (1) ...\n');
  assert.ok(seen.length > before, 'essential stage reports progress');
  assert.ok(seen.at(-1)![1] > 0.13 && seen.at(-1)![1] < 0.37);
  p.feed('I: installing remaining packages inside the chroot...\n');
  p.feed('devvm: generating the initramfs\nI: success in 90 s\n');
  const fractions = seen.map(([, f]) => f);
  assert.deepEqual([...fractions].sort((a, b) => a - b), fractions, 'monotonic');
  assert.equal(fractions.at(-1), 1);
  assert.ok(seen.some(([m]) => m === 'generating the initramfs'));
  assert.ok(fractions.includes(0.07), 'download stage reaches its end after 4 of 4 packages');
});
