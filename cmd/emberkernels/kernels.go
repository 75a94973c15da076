package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// A kernelLine is one row group of the matrix: a Debian kernel flavour and
// series, resolved at run time to the newest package the archive has, so
// that the matrix follows Debian's security updates without edits here.
type kernelLine struct {
	Name   string         // "5.10", "6.1-rt", ...: the key of the expectation table
	Image  *regexp.Regexp // linux-image-* package names of this line
	Suites []string       // suites the package may come from
}

// kernelLines are the kernels the matrix boots. Cloud flavours are small
// (no drivers for real hardware) and boot fastest; the PREEMPT_RT line needs
// the full rt flavour, Debian builds no cloud-rt.
var kernelLines = []kernelLine{
	{"5.10", regexp.MustCompile(`^linux-image-5\.10\.0-[0-9]+-cloud-amd64$`), []string{"bullseye"}},
	{"6.1", regexp.MustCompile(`^linux-image-6\.1\.0-[0-9]+-cloud-amd64$`), []string{"bookworm"}},
	{"6.1-rt", regexp.MustCompile(`^linux-image-6\.1\.0-[0-9]+-rt-amd64$`), []string{"bookworm"}},
	{"6.12", regexp.MustCompile(`^linux-image-6\.12\.[0-9]+\+deb[0-9]+-cloud-amd64$`), []string{"trixie"}},
	{"6.18", regexp.MustCompile(`^linux-image-6\.18\.[0-9]+\+deb[0-9]+-cloud-amd64$`), []string{"trixie-backports", "sid"}},
	// Newest 7.x wherever Debian has it: sid, experimental (release
	// candidates) or trixie-backports, which can be ahead of sid.
	{"7.x", regexp.MustCompile(`^linux-image-7\.[0-9.]+(-rc[0-9]+)?(\+deb[0-9]+)?-cloud-amd64$`), []string{"sid", "experimental", "trixie-backports"}},
}

// archiveSuites are the suites of the private sources.list: every suite a
// kernel line may come from.
var archiveSuites = []string{"bullseye", "bookworm", "trixie", "trixie-backports", "sid", "experimental"}

const (
	archiveURI     = "http://deb.debian.org/debian"
	archiveKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
)

// privateApt runs apt-get and apt-cache with a configuration of its own under
// dir (sources, lists, cache, an empty dpkg status), so that fetching six
// suites' indexes and kernels leaves the host's apt exactly as it was.
type privateApt struct {
	dir string
}

func newPrivateApt(dir string) (*privateApt, error) {
	a := &privateApt{dir: dir}
	for _, d := range []string{"etc/sources.list.d", "etc/preferences.d", "state/lists/partial", "cache/archives/partial", "debs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("private apt: %w", err)
		}
	}
	var src strings.Builder
	for _, s := range archiveSuites {
		fmt.Fprintf(&src, "deb [signed-by=%s] %s %s main\n", archiveKeyring, archiveURI, s)
	}
	if err := os.WriteFile(filepath.Join(dir, "etc/sources.list"), []byte(src.String()), 0o644); err != nil {
		return nil, fmt.Errorf("private apt: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "state/status"), nil, 0o644); err != nil {
		return nil, fmt.Errorf("private apt: %w", err)
	}
	return a, nil
}

func (a *privateApt) options() []string {
	p := func(s string) string { return filepath.Join(a.dir, s) }
	opts := []string{
		"Dir::Etc::SourceList=" + p("etc/sources.list"),
		"Dir::Etc::SourceParts=" + p("etc/sources.list.d"),
		"Dir::Etc::Preferences=" + p("etc/preferences"),
		"Dir::Etc::PreferencesParts=" + p("etc/preferences.d"),
		"Dir::State=" + p("state"),
		"Dir::State::status=" + p("state/status"),
		"Dir::Cache=" + p("cache"),
		"APT::Architectures=amd64",
		"Acquire::Languages=none",
		// Only Packages indexes: no AppStream or command-not-found data
		// that the host's apt.conf.d may ask for.
		"Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false",
		"Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false",
		"Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false",
		"Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled=false",
		"Acquire::IndexTargets::deb::CNF::DefaultEnabled=false",
	}
	var args []string
	for _, o := range opts {
		args = append(args, "-o", o)
	}
	return args
}

func (a *privateApt) run(dir, tool string, args ...string) ([]byte, error) {
	cmd := exec.Command(tool, append(a.options(), args...)...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", tool, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func (a *privateApt) update() error {
	_, err := a.run(a.dir, "apt-get", "-q", "update")
	return err
}

// pkgVersion is one version of a package in one suite of the archive.
type pkgVersion struct {
	Package, Version, Suite string
}

// versions lists every version of the packages whose names match pattern
// (an ERE for apt-cache search --names-only), with the suites that have it,
// from apt-cache policy.
func (a *privateApt) versions(pattern string) ([]pkgVersion, error) {
	out, err := a.run(a.dir, "apt-cache", "search", "--names-only", pattern)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("apt-cache search %q: no packages (is the archive reachable?)", pattern)
	}
	out, err = a.run(a.dir, "apt-cache", append([]string{"policy"}, names...)...)
	if err != nil {
		return nil, err
	}
	return parsePolicy(out), nil
}

var (
	policyPackage = regexp.MustCompile(`^(\S+):$`)
	policyVersion = regexp.MustCompile(`^ (?:\*\*\*| {3}) (\S+) -?[0-9]+$`)
	policySource  = regexp.MustCompile(`^ +-?[0-9]+ \S+ ([^/\s]+)/\S+ \S+ Packages$`)
)

// parsePolicy reads apt-cache policy's version tables:
//
//	linux-image-7.3.4+deb13-cloud-amd64:
//	  Installed: (none)
//	  Candidate: 7.3.4-1~bpo13+1
//	  Version table:
//	     7.3.4-1~bpo13+1 100
//	        100 http://deb.debian.org/debian trixie-backports/main amd64 Packages
func parsePolicy(out []byte) []pkgVersion {
	var res []pkgVersion
	var pkg, ver string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		l := sc.Text()
		if m := policyPackage.FindStringSubmatch(l); m != nil {
			pkg, ver = m[1], ""
		} else if m := policyVersion.FindStringSubmatch(l); m != nil {
			ver = m[1]
		} else if m := policySource.FindStringSubmatch(l); m != nil && pkg != "" && ver != "" {
			res = append(res, pkgVersion{pkg, ver, m[1]})
		}
	}
	return res
}

// newest picks the newest version of line's image package among vs.
func (l kernelLine) newest(vs []pkgVersion) (pkgVersion, error) {
	var cands []pkgVersion
	for _, v := range vs {
		if l.Image.MatchString(v.Package) && contains(l.Suites, v.Suite) {
			cands = append(cands, v)
		}
	}
	if len(cands) == 0 {
		return pkgVersion{}, fmt.Errorf("kernel %s: no package matching %s in %s", l.Name, l.Image, strings.Join(l.Suites, ", "))
	}
	sort.Slice(cands, func(i, j int) bool { return compareDebVersions(cands[i].Version, cands[j].Version) > 0 })
	return cands[0], nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// download fetches pkg=version into the cache of .deb files, unless an
// earlier run did, and returns its path.
func (a *privateApt) download(pkg, version string) (string, error) {
	debs := filepath.Join(a.dir, "debs")
	// apt-get download names the file package_version_arch.deb, with the
	// version's ':' escaped.
	name := fmt.Sprintf("%s_%s_amd64.deb", pkg, strings.ReplaceAll(version, ":", "%3a"))
	path := filepath.Join(debs, name)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	if _, err := a.run(debs, "apt-get", "-q", "download", pkg+"="+version); err != nil {
		return "", err
	}
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("apt-get download %s=%s: %w", pkg, version, err)
	}
	return path, nil
}

// vmlinuz returns the kernel image of a line's package, extracted once into
// the cache. From 6.19 on Debian's linux-image-* holds no image: it depends
// on linux-binary-* (the vmlinuz) and linux-base-*, so the image is looked
// for in the package, then in the linux-binary-* package it depends on.
func (a *privateApt) vmlinuz(v pkgVersion) (string, error) {
	out := filepath.Join(a.dir, "vmlinuz", v.Package+"_"+v.Version)
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	deb, err := a.download(v.Package, v.Version)
	if err != nil {
		return "", err
	}
	img, err := extractVmlinuz(deb)
	if err != nil {
		return "", err
	}
	if img == nil {
		dep, err := binaryDependency(deb)
		if err != nil {
			return "", err
		}
		if dep == "" {
			return "", fmt.Errorf("%s: no kernel image and no linux-binary-* dependency", filepath.Base(deb))
		}
		bin, err := a.download(dep, v.Version)
		if err != nil {
			return "", err
		}
		if img, err = extractVmlinuz(bin); err != nil {
			return "", err
		}
		if img == nil {
			return "", fmt.Errorf("%s: no kernel image (boot/vmlinuz-* or usr/lib/modules/*/vmlinuz)", filepath.Base(bin))
		}
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", fmt.Errorf("vmlinuz: %w", err)
	}
	if err := os.WriteFile(out+".tmp", img, 0o644); err != nil {
		return "", fmt.Errorf("vmlinuz: %w", err)
	}
	return out, os.Rename(out+".tmp", out)
}

// extractVmlinuz unpacks deb with dpkg-deb -x into a temporary directory and
// returns the contents of its kernel image, or nil if it has none.
func extractVmlinuz(deb string) ([]byte, error) {
	tmp, err := os.MkdirTemp(filepath.Dir(deb), "x-")
	if err != nil {
		return nil, fmt.Errorf("extract %s: %w", deb, err)
	}
	defer os.RemoveAll(tmp)
	if out, err := exec.Command("dpkg-deb", "-x", deb, tmp).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("dpkg-deb -x %s: %w: %s", deb, err, out)
	}
	// /boot/vmlinuz-VERSION up to 6.18; from 6.19 on linux-binary-* has
	// /usr/lib/modules/VERSION/vmlinuz.
	imgs, _ := filepath.Glob(filepath.Join(tmp, "boot", "vmlinuz-*"))
	more, _ := filepath.Glob(filepath.Join(tmp, "usr", "lib", "modules", "*", "vmlinuz"))
	imgs = append(imgs, more...)
	if len(imgs) == 0 {
		return nil, nil
	}
	b, err := os.ReadFile(imgs[0])
	if err != nil {
		return nil, fmt.Errorf("extract %s: %w", deb, err)
	}
	return b, nil
}

// binaryDependency returns the linux-binary-* package deb depends on, or "".
func binaryDependency(deb string) (string, error) {
	out, err := exec.Command("dpkg-deb", "-f", deb, "Depends").Output()
	if err != nil {
		return "", fmt.Errorf("dpkg-deb -f %s Depends: %w", deb, err)
	}
	for _, d := range strings.Split(string(out), ",") {
		name := strings.Fields(strings.TrimSpace(d))
		if len(name) > 0 && strings.HasPrefix(name[0], "linux-binary-") {
			return name[0], nil
		}
	}
	return "", nil
}

// prune removes the downloads and images of kernels a full run no longer
// uses (Debian replaced them), so that the cache does not grow with every
// point release.
func (a *privateApt) prune(used []kernel) {
	keep := map[string]bool{}
	for _, k := range used {
		keep[filepath.Base(k.vmlinuz)] = true
		keep[k.pkg.Package+"_"+strings.ReplaceAll(k.pkg.Version, ":", "%3a")+"_amd64.deb"] = true
		// The linux-binary-* package of a linux-image-* one, same version.
		bin := strings.Replace(k.pkg.Package, "linux-image-", "linux-binary-", 1)
		keep[bin+"_"+strings.ReplaceAll(k.pkg.Version, ":", "%3a")+"_amd64.deb"] = true
	}
	for _, dir := range []string{"debs", "vmlinuz"} {
		entries, _ := os.ReadDir(filepath.Join(a.dir, dir))
		for _, e := range entries {
			if !e.IsDir() && !keep[e.Name()] {
				os.Remove(filepath.Join(a.dir, dir, e.Name()))
			}
		}
	}
}
