// Package deploy_test checks the deployment files in deploy/ for syntax and
// for consistency with each other and with the rest of the repository:
// Kubernetes, Docker and the Dapr CLI do not run on this project's machines,
// so this is all the validation they get here.
//
// Every check is a plain function that returns an error, so that the same
// functions run on the real files and, in TestValidatorsRejectBrokenInput,
// on broken snippets that they must reject.
package deploy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// root is the repository root: go test runs in the package folder, deploy/.
const root = ".."

// appID is the Dapr app-id every file must agree on.
const appID = "parley"

// shutdownTimeout is parley's -shutdown-timeout default (app/cmd/parley).
const shutdownTimeout = 10 * time.Second

// componentTypePrefix maps the only component names parley uses to the
// prefix their spec.type must have.
var componentTypePrefix = map[string]string{
	"statestore":  "state.",
	"pubsub":      "pubsub.",
	"configstore": "configuration.",
	"secretstore": "secretstores.",
	"routes":      "state.",    // the route table units share
	"push":        "bindings.", // offline push
}

// connectionKeys are component metadata that an overlay may change when it
// adapts a profile's component to a cluster; every other entry must keep
// its value.
var connectionKeys = map[string]bool{
	"connectionString": true, "redisHost": true, "redisPassword": true, "url": true,
	"protocol": true, "hostname": true, "host": true, "port": true, "username": true,
	"user": true, "password": true, "database": true, "schemaName": true,
}

var (
	loopback      = regexp.MustCompile(`127\.0\.0\.1|localhost|\[::1\]`)
	plainPassword = regexp.MustCompile(`(?i)password\s*=\s*[^\s;]|://[^/\s:@]+:[^/\s@]+@`)
	versionRE     = regexp.MustCompile(`^v[0-9]+$`)
	goDirective   = regexp.MustCompile(`(?m)^go ([0-9]+\.[0-9]+)`)
)

// ---------------------------------------------------------------------------
// Parsing

// doc is one YAML document whose top level is a mapping.
type doc = map[string]any

// parseDocs parses every document of a YAML stream. Empty documents are
// skipped; a document whose top level is not a mapping is an error.
// Duplicate keys are errors too (yaml.v3 rejects them).
func parseDocs(data []byte) ([]doc, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []doc
	for i := 1; ; i++ {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if n.Kind == yaml.DocumentNode && len(n.Content) == 0 {
			continue
		}
		top := &n
		if n.Kind == yaml.DocumentNode {
			top = n.Content[0]
		}
		if top.Kind == yaml.ScalarNode && top.Tag == "!!null" {
			continue
		}
		if top.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("document %d (line %d): the top level is not a mapping", i, top.Line)
		}
		var d doc
		if err := n.Decode(&d); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		docs = append(docs, d)
	}
}

func parseFile(path string) ([]doc, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	docs, err := parseDocs(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return docs, nil
}

// dig walks nested mappings; it returns nil where the path does not exist.
func dig(v any, path ...string) any {
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func str(v any, path ...string) string {
	s, _ := dig(v, path...).(string)
	return s
}

func list(v any, path ...string) []any {
	l, _ := dig(v, path...).([]any)
	return l
}

func isObject(d doc) bool {
	_, a := d["apiVersion"]
	_, k := d["kind"]
	return a || k
}

func isComponent(d doc) bool {
	return strings.HasPrefix(str(d, "apiVersion"), "dapr.io/") && str(d, "kind") == "Component"
}

func isKustomization(d doc) bool {
	return strings.HasPrefix(str(d, "apiVersion"), "kustomize.config.k8s.io/")
}

// ---------------------------------------------------------------------------
// Checks

// checkObject requires what every Kubernetes (or Dapr) object has.
// Kustomization files have no metadata.name and are exempt from it.
func checkObject(d doc) error {
	var errs []error
	if str(d, "apiVersion") == "" {
		errs = append(errs, errors.New("no apiVersion"))
	}
	if str(d, "kind") == "" {
		errs = append(errs, errors.New("no kind"))
	}
	if !isKustomization(d) && str(d, "metadata", "name") == "" {
		errs = append(errs, errors.New("no metadata.name"))
	}
	return errors.Join(errs...)
}

// checkComponent checks one Dapr Component: its name is one parley uses,
// spec.type fits the name, spec.version is set, and every metadata entry has
// a name and exactly one of value and secretKeyRef.
func checkComponent(d doc) error {
	name := str(d, "metadata", "name")
	prefix, known := componentTypePrefix[name]
	if !known {
		return fmt.Errorf("component %q: the name must be one parley uses (statestore, pubsub, configstore, secretstore, routes, push)", name)
	}
	var errs []error
	typ := str(d, "spec", "type")
	switch {
	case typ == "":
		errs = append(errs, fmt.Errorf("component %q: no spec.type", name))
	case !strings.HasPrefix(typ, prefix):
		errs = append(errs, fmt.Errorf("component %q: spec.type %q does not start with %q", name, typ, prefix))
	}
	if v := str(d, "spec", "version"); !versionRE.MatchString(v) {
		errs = append(errs, fmt.Errorf("component %q: spec.version %q is not v1, v2...", name, v))
	}
	if md := dig(d, "spec", "metadata"); md != nil {
		if _, ok := md.([]any); !ok {
			errs = append(errs, fmt.Errorf("component %q: spec.metadata is not a list", name))
		}
	}
	for i, e := range list(d, "spec", "metadata") {
		n := str(e, "name")
		if n == "" {
			errs = append(errs, fmt.Errorf("component %q: metadata entry %d has no name", name, i))
			continue
		}
		_, hasValue := dig(e, "value").(string)
		ref := dig(e, "secretKeyRef")
		switch {
		case hasValue && ref != nil:
			errs = append(errs, fmt.Errorf("component %q: metadata %q has both value and secretKeyRef", name, n))
		case !hasValue && ref == nil:
			errs = append(errs, fmt.Errorf("component %q: metadata %q needs a string value or a secretKeyRef", name, n))
		case ref != nil && (str(ref, "name") == "" || str(ref, "key") == ""):
			errs = append(errs, fmt.Errorf("component %q: metadata %q: secretKeyRef needs name and key", name, n))
		}
	}
	return errors.Join(errs...)
}

// checkScopes requires that scopes, where a resource has them, include the
// app-id.
func checkScopes(d doc, id string) error {
	raw, ok := d["scopes"]
	if !ok {
		return nil
	}
	scopes, ok := raw.([]any)
	if !ok {
		return fmt.Errorf("%s %q: scopes is not a list", str(d, "kind"), str(d, "metadata", "name"))
	}
	if !slices.Contains(scopes, any(id)) {
		return fmt.Errorf("%s %q: scopes %v do not include the app-id %q", str(d, "kind"), str(d, "metadata", "name"), scopes, id)
	}
	return nil
}

// checkClusterComponent adds what a component meant for a cluster needs:
// scopes, no loopback address, and no password in plain text.
func checkClusterComponent(d doc) error {
	name := str(d, "metadata", "name")
	var errs []error
	if _, ok := d["scopes"]; !ok {
		errs = append(errs, fmt.Errorf("component %q: no scopes", name))
	}
	for _, e := range list(d, "spec", "metadata") {
		n, v := str(e, "name"), str(e, "value")
		if loopback.MatchString(v) {
			errs = append(errs, fmt.Errorf("component %q: metadata %q points at a loopback address: %q", name, n, v))
		}
		if strings.Contains(strings.ToLower(n), "password") && dig(e, "secretKeyRef") == nil {
			errs = append(errs, fmt.Errorf("component %q: metadata %q must come from a secretKeyRef", name, n))
		}
		if plainPassword.MatchString(v) {
			errs = append(errs, fmt.Errorf("component %q: metadata %q holds a password in plain text", name, n))
		}
	}
	return errors.Join(errs...)
}

// checkOverlayMatchesProfile compares an overlay's components with its
// profile's: the same names, types and versions, and every setting that is
// not about the connection kept as it is.
func checkOverlayMatchesProfile(overlay, profile map[string]doc) error {
	var errs []error
	for name := range profile {
		if _, ok := overlay[name]; !ok {
			errs = append(errs, fmt.Errorf("the overlay has no component %q", name))
		}
	}
	for name, o := range overlay {
		p, ok := profile[name]
		if !ok {
			errs = append(errs, fmt.Errorf("component %q is not in the profile", name))
			continue
		}
		for _, f := range []string{"type", "version"} {
			if str(o, "spec", f) != str(p, "spec", f) {
				errs = append(errs, fmt.Errorf("component %q: spec.%s %q differs from the profile's %q", name, f, str(o, "spec", f), str(p, "spec", f)))
			}
		}
		have := map[string]any{}
		for _, e := range list(o, "spec", "metadata") {
			have[str(e, "name")] = dig(e, "value")
		}
		for _, e := range list(p, "spec", "metadata") {
			n := str(e, "name")
			if connectionKeys[n] {
				continue
			}
			if v, ok := have[n]; !ok || !reflect.DeepEqual(v, dig(e, "value")) {
				errs = append(errs, fmt.Errorf("component %q: metadata %q is %v in the profile but %v in the overlay", name, n, dig(e, "value"), v))
			}
		}
	}
	return errors.Join(errs...)
}

// kustomizeRefs lists the local paths a kustomization names, each with the
// field it came from, resolved against the kustomization's folder.
func kustomizeRefs(dir string, d doc) (refs map[string]string, err error) {
	refs = map[string]string{}
	var errs []error
	add := func(field string, v any) {
		s, ok := v.(string)
		if !ok || s == "" {
			errs = append(errs, fmt.Errorf("%s: entry %v is not a path", field, v))
			return
		}
		if strings.Contains(s, "://") || strings.HasPrefix(s, "github.com/") {
			return // remote: nothing on disk to check
		}
		if i := strings.Index(s, "="); i >= 0 && field != "resources" && field != "components" {
			s = s[i+1:] // generators take key=path
		}
		refs[filepath.Clean(filepath.Join(dir, s))] = field
	}
	for _, field := range []string{"resources", "components", "patchesStrategicMerge", "crds"} {
		for _, v := range list(d, field) {
			add(field, v)
		}
	}
	for _, p := range list(d, "patches") {
		if path := dig(p, "path"); path != nil {
			add("patches", path)
		}
	}
	for _, field := range []string{"configMapGenerator", "secretGenerator"} {
		for _, g := range list(d, field) {
			for _, sub := range []string{"files", "envs"} {
				for _, v := range list(g, sub) {
					add(field+"."+sub, v)
				}
			}
			if env := dig(g, "env"); env != nil {
				add(field+".env", env)
			}
		}
	}
	return refs, errors.Join(errs...)
}

// checkKustomization requires every local path a kustomization names to
// exist; a folder named in resources must hold a kustomization itself.
func checkKustomization(dir string, d doc) error {
	refs, err := kustomizeRefs(dir, d)
	errs := []error{err}
	if len(list(d, "resources")) == 0 {
		errs = append(errs, errors.New("no resources"))
	}
	for _, path := range slices.Sorted(maps.Keys(refs)) {
		field := refs[path]
		st, err := os.Stat(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s entry %s does not exist", field, path))
			continue
		}
		if st.IsDir() && !hasKustomization(path) {
			errs = append(errs, fmt.Errorf("%s entry %s is a folder without a kustomization.yaml", field, path))
		}
	}
	return errors.Join(errs...)
}

func hasKustomization(dir string) bool {
	for _, n := range []string{"kustomization.yaml", "kustomization.yml", "Kustomization"} {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			return true
		}
	}
	return false
}

// dockerInstr is one Dockerfile instruction, continuation lines joined.
type dockerInstr struct {
	cmd  string // upper case
	args string
}

func parseDockerfile(text string) []dockerInstr {
	var out []dockerInstr
	var cur strings.Builder
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if strings.HasPrefix(line, "#") {
			continue // a comment inside a continued instruction
		}
		if s, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, dockerInstr{strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

// checkDockerfile checks the image recipe: a golang:<goVersion> stage named
// build that builds ./app/cmd/parley statically with -trimpath, and a final
// stage that copies from it, runs as a non-root USER, exposes 8080, and
// starts parley against an external sidecar.
func checkDockerfile(text, goVersion string) error {
	type stage struct {
		from  string
		alias string
		body  []dockerInstr
	}
	var stages []*stage
	for _, in := range parseDockerfile(text) {
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			f = slices.DeleteFunc(f, func(s string) bool { return strings.HasPrefix(s, "--platform=") })
			s := &stage{}
			if len(f) > 0 {
				s.from = f[0]
			}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.alias = f[2]
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				return fmt.Errorf("%s before the first FROM", in.cmd)
			}
			continue
		}
		stages[len(stages)-1].body = append(stages[len(stages)-1].body, in)
	}
	if len(stages) < 2 {
		return fmt.Errorf("%d stage(s): want a build stage and a runtime stage", len(stages))
	}
	var build *stage
	for _, s := range stages[:len(stages)-1] {
		if s.alias == "build" {
			build = s
		}
	}
	if build == nil {
		return errors.New("no FROM ... AS build stage")
	}
	var errs []error
	if want := "golang:" + goVersion; build.from != want && !strings.HasPrefix(build.from, want+"-") && !strings.HasPrefix(build.from, want+".") {
		errs = append(errs, fmt.Errorf("the build stage is FROM %s, want %s (go.mod)", build.from, want))
	}
	var runs strings.Builder
	for _, in := range build.body {
		if in.cmd == "RUN" {
			runs.WriteString(in.args + "\n")
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./app/cmd/parley"} {
		if !strings.Contains(runs.String(), want) {
			errs = append(errs, fmt.Errorf("the build stage never runs with %s", want))
		}
	}

	final := stages[len(stages)-1]
	if strings.HasPrefix(final.from, "golang") {
		errs = append(errs, fmt.Errorf("the runtime stage is FROM %s, a build image", final.from))
	}
	var user, entry string
	var copied, exposed bool
	for _, in := range final.body {
		switch in.cmd {
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entry = in.args
		case "COPY":
			copied = copied || strings.Contains(in.args, "--from=build")
		case "EXPOSE":
			exposed = exposed || slices.Contains(strings.Fields(in.args), "8080") || slices.Contains(strings.Fields(in.args), "8080/tcp")
		}
	}
	if user == "" {
		errs = append(errs, errors.New("the runtime stage sets no USER: it would run as root"))
	} else if name, _, _ := strings.Cut(user, ":"); name == "root" || name == "0" {
		errs = append(errs, fmt.Errorf("the runtime stage runs as USER %s", user))
	}
	if !copied {
		errs = append(errs, errors.New("the runtime stage copies nothing from the build stage"))
	}
	if !exposed {
		errs = append(errs, errors.New("the runtime stage does not EXPOSE 8080"))
	}
	var argv []string
	if err := json.Unmarshal([]byte(entry), &argv); err != nil {
		errs = append(errs, fmt.Errorf("ENTRYPOINT %q is not in exec (JSON) form: %v", entry, err))
	} else {
		joined := " " + strings.Join(argv, " ") + " "
		for _, want := range []string{" -backend dapr ", " -sidecar external ", " -addr :8080 "} {
			if !strings.Contains(joined, want) {
				errs = append(errs, fmt.Errorf("ENTRYPOINT %v lacks%s", argv, strings.TrimRight(want, " ")))
			}
		}
	}
	return errors.Join(errs...)
}

// runFile is the part of a Dapr CLI multi-app run file that is checked.
type runFile struct {
	Version int `yaml:"version"`
	Common  struct {
		ResourcesPath  string   `yaml:"resourcesPath"`
		ResourcesPaths []string `yaml:"resourcesPaths"`
		ConfigFilePath string   `yaml:"configFilePath"`
	} `yaml:"common"`
	Apps []struct {
		AppID          string   `yaml:"appID"`
		AppDirPath     string   `yaml:"appDirPath"`
		AppPort        int      `yaml:"appPort"`
		ResourcesPath  string   `yaml:"resourcesPath"`
		ResourcesPaths []string `yaml:"resourcesPaths"`
		ConfigFilePath string   `yaml:"configFilePath"`
		Command        []string `yaml:"command"`
	} `yaml:"apps"`
}

// checkRunFile checks a multi-app run file the way the Dapr CLI resolves it:
// common paths and appDirPath are relative to the file's folder, an app's
// own paths relative to its appDirPath. It returns the app port of parley.
func checkRunFile(path string) (appPort int, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var rf runFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&rf); err != nil && !isUnknownField(err) {
		return 0, err
	}
	if rf.Version != 1 {
		return 0, fmt.Errorf("version %d, want 1", rf.Version)
	}
	base := filepath.Dir(path)
	var errs []error
	exists := func(what, p string, dir bool) {
		st, err := os.Stat(p)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s %s does not exist", what, p))
		case st.IsDir() != dir:
			errs = append(errs, fmt.Errorf("%s %s: want a folder %v", what, p, dir))
		}
	}
	resolve := func(dir, p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	commonRes := append(slices.Clone(rf.Common.ResourcesPaths), rf.Common.ResourcesPath)
	for _, p := range commonRes {
		if p != "" {
			exists("resources path", resolve(base, p), true)
		}
	}
	if p := rf.Common.ConfigFilePath; p != "" {
		exists("config file", resolve(base, p), false)
	}
	var found bool
	for _, app := range rf.Apps {
		if app.AppID != appID {
			continue
		}
		found = true
		appPort = app.AppPort
		if app.AppDirPath == "" {
			errs = append(errs, errors.New("app parley: no appDirPath"))
			continue
		}
		appDir := resolve(base, app.AppDirPath)
		exists("appDirPath", appDir, true)
		res := append(slices.Clone(app.ResourcesPaths), app.ResourcesPath)
		var own bool
		for _, p := range res {
			if p != "" {
				own = true
				exists("resources path", resolve(appDir, p), true)
			}
		}
		if !own && len(slices.DeleteFunc(commonRes, func(s string) bool { return s == "" })) == 0 {
			errs = append(errs, errors.New("app parley: no resources path, in the app or in common"))
		}
		if p := app.ConfigFilePath; p != "" {
			exists("config file", resolve(appDir, p), false)
		}
		if app.AppPort <= 0 {
			errs = append(errs, errors.New("app parley: no appPort"))
		}
		cmd := strings.Join(app.Command, " ")
		if !strings.HasPrefix(cmd, "go run ./app/cmd/parley ") ||
			!strings.Contains(cmd+" ", " -backend dapr ") || !strings.Contains(cmd+" ", " -sidecar external ") {
			errs = append(errs, fmt.Errorf("app parley: command %q is not go run ./app/cmd/parley -backend dapr -sidecar external", cmd))
		} else {
			exists("the package of the command,", filepath.Join(appDir, "app", "cmd", "parley"), true)
		}
	}
	if !found {
		errs = append(errs, fmt.Errorf("no app with appID %q", appID))
	}
	return appPort, errors.Join(errs...)
}

// isUnknownField tells a field the checker does not model (appProtocol,
// env...) from a real decoding error.
func isUnknownField(err error) bool {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return false
	}
	for _, e := range te.Errors {
		if !strings.Contains(e, "not found in type") {
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------------------
// The repository's files

type manifest struct {
	path string // relative to the repository root, with "/"
	docs []doc
	err  error
}

var loadRepo = sync.OnceValues(func() ([]manifest, error) {
	var paths []string
	for _, dir := range []string{"deploy", "components"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !e.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
				paths = append(paths, p)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	side, err := filepath.Glob(filepath.Join(root, "sidecar", "*.yaml"))
	if err != nil {
		return nil, err
	}
	paths = append(paths, side...)
	var out []manifest
	for _, p := range paths {
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return nil, err
		}
		docs, err := parseFile(p)
		out = append(out, manifest{path: filepath.ToSlash(rel), docs: docs, err: err})
	}
	return out, nil
})

func repoFiles(t *testing.T) []manifest {
	t.Helper()
	files, err := loadRepo()
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 20 {
		t.Fatalf("found %d YAML files under deploy/, components/ and sidecar/; the walk is wrong", len(files))
	}
	return files
}

// objects returns the parsed objects of the files under prefix, by kind.
func objects(t *testing.T, prefix string) map[string][]doc {
	t.Helper()
	out := map[string][]doc{}
	for _, f := range repoFiles(t) {
		if !strings.HasPrefix(f.path, prefix) {
			continue
		}
		if f.err != nil {
			t.Fatal(f.err)
		}
		for _, d := range f.docs {
			if isObject(d) {
				out[str(d, "kind")] = append(out[str(d, "kind")], d)
			}
		}
	}
	return out
}

func one(t *testing.T, objs map[string][]doc, kind string) doc {
	t.Helper()
	if n := len(objs[kind]); n != 1 {
		t.Fatalf("%d objects of kind %s, want 1", n, kind)
	}
	return objs[kind][0]
}

// caseName turns a path into a snake_case subtest name.
func caseName(path string) string {
	return strings.NewReplacer("/", "_", ".", "_", "-", "_").Replace(path)
}

func goVersion(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := goDirective.FindSubmatch(data)
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	return string(m[1])
}

// ---------------------------------------------------------------------------
// Tests

func TestYAMLFilesParse(t *testing.T) {
	t.Parallel()
	for _, f := range repoFiles(t) {
		t.Run(caseName(f.path), func(t *testing.T) {
			t.Parallel()
			if f.err != nil {
				t.Fatal(f.err)
			}
			if len(f.docs) == 0 {
				t.Fatalf("%s holds no document", f.path)
			}
		})
	}
}

func TestObjectsHaveIdentity(t *testing.T) {
	t.Parallel()
	for _, f := range repoFiles(t) {
		t.Run(caseName(f.path), func(t *testing.T) {
			t.Parallel()
			for i, d := range f.docs {
				if !isObject(d) {
					continue
				}
				if err := checkObject(d); err != nil {
					t.Errorf("%s, document %d: %v", f.path, i+1, err)
				}
			}
		})
	}
}

func TestComponents(t *testing.T) {
	t.Parallel()
	id := str(one(t, objects(t, "deploy/kubernetes/base/"), "Deployment"), "spec", "template", "metadata", "annotations", "dapr.io/app-id")
	var n int
	for _, f := range repoFiles(t) {
		for i, d := range f.docs {
			if !isComponent(d) {
				continue
			}
			n++
			t.Run(caseName(fmt.Sprintf("%s_%d", f.path, i+1)), func(t *testing.T) {
				t.Parallel()
				if err := checkComponent(d); err != nil {
					t.Error(err)
				}
				if err := checkScopes(d, id); err != nil {
					t.Error(err)
				}
				if strings.HasPrefix(f.path, "deploy/kubernetes/") {
					if err := checkClusterComponent(d); err != nil {
						t.Error(err)
					}
				}
			})
		}
	}
	if n < 20 {
		t.Fatalf("found %d components; the walk is wrong", n)
	}
}

func TestOverlaysMatchProfiles(t *testing.T) {
	t.Parallel()
	overlays, err := os.ReadDir(filepath.Join(root, "deploy", "kubernetes", "overlays"))
	if err != nil {
		t.Fatal(err)
	}
	if len(overlays) == 0 {
		t.Fatal("no overlays")
	}
	for _, o := range overlays {
		profile := o.Name()
		t.Run(caseName(profile), func(t *testing.T) {
			t.Parallel()
			comps := func(prefix string) map[string]doc {
				out := map[string]doc{}
				for _, d := range objects(t, prefix)["Component"] {
					out[str(d, "metadata", "name")] = d
				}
				return out
			}
			// A unit's overlay, units-<name>, matches the unit's folder in
			// components/units.
			dir := profile
			if unit, ok := strings.CutPrefix(profile, "units-"); ok {
				dir = "units/" + unit
			}
			want := comps("components/" + dir + "/")
			if len(want) == 0 {
				t.Fatalf("overlay %s has no profile components/%s", profile, dir)
			}
			if err := checkOverlayMatchesProfile(comps("deploy/kubernetes/overlays/"+profile+"/"), want); err != nil {
				t.Error(err)
			}
			k, err := parseFile(filepath.Join(root, "deploy", "kubernetes", "overlays", profile, "kustomization.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(list(k[0], "resources"), any("../../base")) {
				t.Errorf("overlay %s does not build on ../../base", profile)
			}
		})
	}
}

// TestUnitOverlays: the overlays of a hybrid deployment's units
// (units-<name>) form one IM: every one lists the same units in
// PARLEY_UNITS, names itself in PARLEY_UNIT, reaches every other unit
// through an HTTPEndpoint of the name it lists it by, with a resiliency
// target of that name, and shares one route table (the same table and
// keyPrefix none).
func TestUnitOverlays(t *testing.T) {
	t.Parallel()
	overlays, err := filepath.Glob(filepath.Join(root, "deploy", "kubernetes", "overlays", "units-*"))
	if err != nil || len(overlays) < 2 {
		t.Fatalf("unit overlays: %v, %v; want two at least", overlays, err)
	}
	var names []string
	var routes []doc
	for _, dir := range overlays {
		self := strings.TrimPrefix(filepath.Base(dir), "units-")
		names = append(names, self)
		t.Run(caseName(filepath.Base(dir)), func(t *testing.T) {
			objs := objects(t, "deploy/kubernetes/overlays/"+filepath.Base(dir)+"/")
			var unit, list string
			for _, d := range objs["Deployment"] {
				for _, c := range dig(d, "spec", "template", "spec", "containers").([]any) {
					if v, _, ok := env(c.(map[string]any), "PARLEY_UNIT"); ok {
						unit = v
					}
					if v, _, ok := env(c.(map[string]any), "PARLEY_UNITS"); ok {
						list = v
					}
				}
			}
			if unit != self {
				t.Errorf("PARLEY_UNIT is %q, want %q", unit, self)
			}
			endpoints := map[string]doc{}
			for _, d := range objs["HTTPEndpoint"] {
				endpoints[str(d, "metadata", "name")] = d
			}
			targets := map[string]bool{}
			for _, d := range objs["Resiliency"] {
				if m, ok := dig(d, "spec", "targets", "apps").(map[string]any); ok {
					for k := range m {
						targets[k] = true
					}
				}
			}
			var listed []string
			for _, part := range strings.Split(list, ",") {
				name, reach, ok := strings.Cut(part, "=")
				if !ok {
					t.Fatalf("PARLEY_UNITS %q: %q is not name=app-id", list, part)
				}
				listed = append(listed, name)
				if name == self {
					continue
				}
				ep, ok := endpoints[reach]
				switch {
				case !ok:
					t.Errorf("unit %s is reached as %q, but no HTTPEndpoint has that name", name, reach)
				case !strings.HasPrefix(str(ep, "spec", "baseUrl"), "https://") || !strings.Contains(str(ep, "spec", "baseUrl"), "/v1.0/invoke/"):
					t.Errorf("HTTPEndpoint %s: baseUrl %q is not another daprd's invoke API over https", reach, str(ep, "spec", "baseUrl"))
				}
				if !targets[reach] {
					t.Errorf("calls to unit %s (%s) have no resiliency target", name, reach)
				}
				if str(list0(ep, "spec", "headers"), "name") != "dapr-api-token" {
					t.Errorf("HTTPEndpoint %s sends no dapr-api-token header", reach)
				}
			}
			slices.Sort(listed)
			want := []string{}
			for _, o := range overlays {
				want = append(want, strings.TrimPrefix(filepath.Base(o), "units-"))
			}
			slices.Sort(want)
			if !slices.Equal(listed, want) {
				t.Errorf("PARLEY_UNITS lists %v, the unit overlays are %v", listed, want)
			}
		})
		for _, d := range objects(t, "deploy/kubernetes/overlays/"+filepath.Base(dir)+"/")["Component"] {
			if str(d, "metadata", "name") == "routes" {
				routes = append(routes, d)
			}
		}
	}
	if len(routes) != len(overlays) {
		t.Fatalf("%d routes components for %d units (%v)", len(routes), len(overlays), names)
	}
	for _, r := range routes {
		meta := map[string]string{}
		for _, e := range list(r, "spec", "metadata") {
			meta[str(e, "name")] = str(e, "value")
		}
		if meta["keyPrefix"] != "none" || meta["tablePrefix"] != "parley_units_" || str(r, "spec", "type") != str(routes[0], "spec", "type") {
			t.Errorf("a routes component is %s with %v: every unit needs the same table, keyPrefix none", str(r, "spec", "type"), meta)
		}
	}
}

// list0 is the first element of a list, or nil.
func list0(v any, path ...string) any {
	if l := list(v, path...); len(l) > 0 {
		return l[0]
	}
	return nil
}

func TestKustomizations(t *testing.T) {
	t.Parallel()
	referenced := map[string]bool{}
	var manifests []string
	for _, f := range repoFiles(t) {
		if !strings.HasPrefix(f.path, "deploy/kubernetes/") {
			continue
		}
		if filepath.Base(f.path) != "kustomization.yaml" {
			manifests = append(manifests, f.path)
			continue
		}
		if f.err != nil || len(f.docs) != 1 {
			t.Fatalf("%s: want one document (%v)", f.path, f.err)
		}
		dir := filepath.Join(root, filepath.Dir(f.path))
		refs, _ := kustomizeRefs(dir, f.docs[0])
		for p := range refs {
			rel, _ := filepath.Rel(root, p)
			referenced[filepath.ToSlash(rel)] = true
		}
		t.Run(caseName(f.path), func(t *testing.T) {
			t.Parallel()
			if err := checkKustomization(dir, f.docs[0]); err != nil {
				t.Error(err)
			}
		})
	}
	t.Run("every_manifest_is_referenced", func(t *testing.T) {
		t.Parallel()
		if len(manifests) == 0 {
			t.Fatal("no manifests under deploy/kubernetes")
		}
		for _, m := range manifests {
			if !referenced[m] {
				t.Errorf("%s is named by no kustomization.yaml: kubectl apply -k would leave it out", m)
			}
		}
	})
}

// container returns the Deployment's parley container.
func container(t *testing.T, dep doc) doc {
	t.Helper()
	for _, c := range list(dep, "spec", "template", "spec", "containers") {
		if str(c, "name") == "parley" {
			return c.(map[string]any)
		}
	}
	t.Fatal("the Deployment has no container named parley")
	return nil
}

func env(c doc, name string) (value string, from any, ok bool) {
	for _, e := range list(c, "env") {
		if str(e, "name") == name {
			return str(e, "value"), dig(e, "valueFrom"), true
		}
	}
	return "", nil, false
}

func toInt(v any) (int, error) {
	switch x := v.(type) {
	case int:
		return x, nil
	case string:
		return strconv.Atoi(x)
	}
	return 0, fmt.Errorf("%v (%T) is not a number", v, v)
}

func TestDeploymentConsistency(t *testing.T) {
	t.Parallel()
	base := objects(t, "deploy/kubernetes/base/")
	dep := one(t, base, "Deployment")
	ann := func(k string) string { return str(dep, "spec", "template", "metadata", "annotations", k) }
	podLabels, _ := dig(dep, "spec", "template", "metadata", "labels").(map[string]any)

	selects := func(selector any) error {
		sel, ok := selector.(map[string]any)
		if !ok || len(sel) == 0 {
			return errors.New("empty selector")
		}
		for k, v := range sel {
			if podLabels[k] != v {
				return fmt.Errorf("selector %s=%v does not match the pod labels %v", k, v, podLabels)
			}
		}
		return nil
	}
	probe := func(kind, path string) error {
		c := container(t, dep)
		p := dig(c, kind, "httpGet")
		if str(p, "path") != path {
			return fmt.Errorf("%s path %q, want %s", kind, str(p, "path"), path)
		}
		port := dig(p, "port")
		if port == "http" {
			for _, cp := range list(c, "ports") {
				if str(cp, "name") == "http" {
					port = dig(cp, "containerPort")
				}
			}
		}
		if n, err := toInt(port); err != nil || n != 8080 {
			return fmt.Errorf("%s port %v, want 8080", kind, dig(p, "port"))
		}
		return nil
	}

	cases := []struct {
		name  string
		check func(t *testing.T) error
	}{
		{"dapr_enabled", func(t *testing.T) error {
			if ann("dapr.io/enabled") != "true" {
				return fmt.Errorf("dapr.io/enabled is %q", ann("dapr.io/enabled"))
			}
			return nil
		}},
		{"app_id_matches_env_and_default", func(t *testing.T) error {
			v, _, _ := env(container(t, dep), "PARLEY_APP_ID")
			if ann("dapr.io/app-id") != appID || v != appID {
				return fmt.Errorf("dapr.io/app-id %q, PARLEY_APP_ID %q, want both %q", ann("dapr.io/app-id"), v, appID)
			}
			return nil
		}},
		{"app_port_matches_env_and_run_file", func(t *testing.T) error {
			v, _, _ := env(container(t, dep), "PARLEY_APP_PORT")
			port, err := checkRunFile(filepath.Join(root, "deploy", "dapr.yaml"))
			if err != nil {
				return err
			}
			if a := ann("dapr.io/app-port"); a == "" || a != v || a != strconv.Itoa(port) || a == "8080" {
				return fmt.Errorf("dapr.io/app-port %q, PARLEY_APP_PORT %q, dapr.yaml appPort %d: want one port, not 8080", a, v, port)
			}
			return nil
		}},
		{"config_annotation_names_the_configuration", func(t *testing.T) error {
			if want := str(one(t, base, "Configuration"), "metadata", "name"); ann("dapr.io/config") != want {
				return fmt.Errorf("dapr.io/config %q, the Configuration is %q", ann("dapr.io/config"), want)
			}
			return nil
		}},
		{"log_level_set", func(t *testing.T) error {
			if !slices.Contains([]string{"debug", "info", "warn", "error"}, ann("dapr.io/log-level")) {
				return fmt.Errorf("dapr.io/log-level %q", ann("dapr.io/log-level"))
			}
			return nil
		}},
		{"readiness_probe_is_readyz_on_8080", func(t *testing.T) error { return probe("readinessProbe", "/readyz") }},
		{"liveness_probe_is_healthz_on_8080", func(t *testing.T) error { return probe("livenessProbe", "/healthz") }},
		{"resources_requested_and_limited", func(t *testing.T) error {
			r := dig(container(t, dep), "resources")
			if str(r, "requests", "cpu") == "" || str(r, "requests", "memory") == "" || str(r, "limits", "memory") == "" {
				return fmt.Errorf("resources %v: want cpu and memory requests and a memory limit", r)
			}
			return nil
		}},
		{"jwt_secret_from_a_secret", func(t *testing.T) error {
			v, from, ok := env(container(t, dep), "PARLEY_JWT_SECRET")
			if !ok || v != "" || str(from, "secretKeyRef", "name") == "" || str(from, "secretKeyRef", "key") == "" {
				return errors.New("PARLEY_JWT_SECRET must come from valueFrom.secretKeyRef")
			}
			return nil
		}},
		{"dev_tokens_off", func(t *testing.T) error {
			if v, _, ok := env(container(t, dep), "PARLEY_DEV_TOKENS"); ok && v == "true" {
				return errors.New("PARLEY_DEV_TOKENS is on")
			}
			return nil
		}},
		{"grace_period_covers_prestop_shutdown_and_sidecar", func(t *testing.T) error {
			grace, err := toInt(dig(dep, "spec", "template", "spec", "terminationGracePeriodSeconds"))
			if err != nil {
				return fmt.Errorf("terminationGracePeriodSeconds: %v", err)
			}
			pre := dig(container(t, dep), "lifecycle", "preStop")
			sleep, err := toInt(dig(pre, "sleep", "seconds"))
			if err != nil {
				if cmd := list(pre, "exec", "command"); len(cmd) == 2 && cmd[0] == "sleep" {
					sleep, err = toInt(cmd[1])
				}
			}
			if err != nil || sleep <= 0 {
				return fmt.Errorf("no preStop sleep (%v)", pre)
			}
			need := time.Duration(sleep)*time.Second + shutdownTimeout
			if b := ann("dapr.io/block-shutdown-duration"); b != "" {
				d, err := time.ParseDuration(b)
				if err != nil {
					return fmt.Errorf("dapr.io/block-shutdown-duration: %v", err)
				}
				if d < need {
					return fmt.Errorf("the sidecar's shutdown is held %v, less than preStop plus parley's shutdown, %v", d, need)
				}
				g, _ := toInt(ann("dapr.io/graceful-shutdown-seconds"))
				need = d + time.Duration(g)*time.Second
			}
			if time.Duration(grace)*time.Second <= need {
				return fmt.Errorf("terminationGracePeriodSeconds %d does not exceed %v", grace, need)
			}
			return nil
		}},
		{"service_reaches_pod_port_8080", func(t *testing.T) error {
			svc := one(t, base, "Service")
			if err := selects(dig(svc, "spec", "selector")); err != nil {
				return err
			}
			for _, p := range list(svc, "spec", "ports") {
				if n, _ := toInt(dig(p, "port")); n == 8080 && (dig(p, "targetPort") == "http" || dig(p, "targetPort") == 8080) {
					return nil
				}
			}
			return errors.New("no Service port 8080 to the container's http port")
		}},
		{"pod_disruption_budget_selects_pods", func(t *testing.T) error {
			pdb := one(t, base, "PodDisruptionBudget")
			if dig(pdb, "spec", "minAvailable") == nil && dig(pdb, "spec", "maxUnavailable") == nil {
				return errors.New("neither minAvailable nor maxUnavailable")
			}
			return selects(dig(pdb, "spec", "selector", "matchLabels"))
		}},
		{"deployment_selects_its_pods", func(t *testing.T) error {
			return selects(dig(dep, "spec", "selector", "matchLabels"))
		}},
		{"configuration_spec_equals_sidecar_config", func(t *testing.T) error {
			c := one(t, base, "Configuration")
			if nr := str(c, "spec", "nameResolution", "component"); nr != "" && nr != "kubernetes" {
				return fmt.Errorf("name resolution %q in a cluster, want kubernetes", nr)
			}
			// Name resolution and the exporters of tracing differ by
			// design: the sidecar/ ones are for daprd processes on one
			// machine, which read the collector from their environment.
			return sameSpec(c, filepath.Join(root, "sidecar", "config.yaml"), "nameResolution", "tracing")
		}},
		{"configuration_tracing_samples_as_sidecar_config", func(t *testing.T) error {
			c := one(t, base, "Configuration")
			docs, err := parseFile(filepath.Join(root, "sidecar", "config.yaml"))
			if err != nil {
				return err
			}
			if len(docs) != 1 {
				return fmt.Errorf("sidecar/config.yaml: %d documents, want 1", len(docs))
			}
			for _, k := range []string{"samplingRate", "stdout"} {
				want, got := dig(docs[0], "spec", "tracing", k), dig(c, "spec", "tracing", k)
				if want == nil || !reflect.DeepEqual(want, got) {
					return fmt.Errorf("spec.tracing.%s is %v, sidecar/config.yaml has %v: copy it over", k, got, want)
				}
			}
			// The cluster's sidecars get no environment from parley: they
			// must name a collector, not a variable.
			if addr := str(c, "spec", "tracing", "otel", "endpointAddress"); addr == "" || strings.Contains(addr, "$") {
				return fmt.Errorf("spec.tracing.otel.endpointAddress %q: name the cluster's collector", addr)
			}
			if p := str(c, "spec", "tracing", "otel", "protocol"); p != "grpc" && p != "http" {
				return fmt.Errorf("spec.tracing.otel.protocol %q: want grpc or http", p)
			}
			return nil
		}},
		{"resiliency_spec_equals_sidecar_resiliency", func(t *testing.T) error {
			return sameSpec(one(t, base, "Resiliency"), filepath.Join(root, "sidecar", "resiliency.yaml"))
		}},
		{"resiliency_scoped_to_app_id", func(t *testing.T) error {
			r := one(t, base, "Resiliency")
			if _, ok := r["scopes"]; !ok {
				return errors.New("the Resiliency has no scopes")
			}
			return checkScopes(r, ann("dapr.io/app-id"))
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if err := c.check(t); err != nil {
				t.Error(err)
			}
		})
	}
}

// sameSpec compares an object's spec with the one in a file of sidecar/,
// leaving out the top-level spec fields named in except.
func sameSpec(d doc, path string, except ...string) error {
	docs, err := parseFile(path)
	if err != nil {
		return err
	}
	if len(docs) != 1 {
		return fmt.Errorf("%s: %d documents, want 1", path, len(docs))
	}
	if str(docs[0], "kind") != str(d, "kind") || str(docs[0], "metadata", "name") != str(d, "metadata", "name") {
		return fmt.Errorf("%s is %s %q, the manifest %s %q", path, str(docs[0], "kind"), str(docs[0], "metadata", "name"), str(d, "kind"), str(d, "metadata", "name"))
	}
	trim := func(v any) map[string]any {
		m, _ := v.(map[string]any)
		m = maps.Clone(m)
		for _, k := range except {
			delete(m, k)
		}
		return m
	}
	want, got := trim(docs[0]["spec"]), trim(d["spec"])
	if len(want) == 0 {
		return fmt.Errorf("%s has no spec", path)
	}
	for k := range maps.Keys(want) {
		if !reflect.DeepEqual(want[k], got[k]) {
			return fmt.Errorf("spec.%s differs from %s: copy it over", k, path)
		}
	}
	for k := range maps.Keys(got) {
		if _, ok := want[k]; !ok {
			return fmt.Errorf("spec.%s is not in %s", k, path)
		}
	}
	return nil
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join(root, "deploy", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if err := checkDockerfile(string(data), goVersion(t)); err != nil {
		t.Error(err)
	}
	ignore, err := os.ReadFile(filepath.Join(root, "deploy", "Dockerfile.dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(strings.Fields(string(ignore)), "sidecar") {
		t.Error("Dockerfile.dockerignore does not keep sidecar/ (and its daprd binary) out of the build context")
	}
}

func TestDaprRunFile(t *testing.T) {
	t.Parallel()
	if _, err := checkRunFile(filepath.Join(root, "deploy", "dapr.yaml")); err != nil {
		t.Error(err)
	}
}

// TestValidatorsRejectBrokenInput shows that the checks above can fail: each
// broken snippet must be rejected, with a message that names the fault,
// while the valid ones pass.
func TestValidatorsRejectBrokenInput(t *testing.T) {
	t.Parallel()
	component := func(y string) func(t *testing.T) error {
		return func(t *testing.T) error {
			docs, err := parseDocs([]byte(y))
			if err != nil {
				return err
			}
			return errors.Join(checkObject(docs[0]), checkComponent(docs[0]), checkScopes(docs[0], appID), checkClusterComponent(docs[0]))
		}
	}
	object := func(y string) func(t *testing.T) error {
		return func(t *testing.T) error {
			docs, err := parseDocs([]byte(y))
			if err != nil {
				return err
			}
			return checkObject(docs[0])
		}
	}
	const validComponent = `
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.redis
  version: v1
  metadata:
    - name: redisHost
      value: "redis:6379"
    - name: redisPassword
      secretKeyRef: {name: parley-redis, key: password}
scopes: [parley]
`
	const validDockerfile = `
FROM golang:1.26 AS build
RUN CGO_ENABLED=0 go build -trimpath \
    -o /parley ./app/cmd/parley
FROM gcr.io/distroless/static:nonroot
COPY --from=build /parley /parley
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/parley", "-backend", "dapr", "-sidecar", "external", "-addr", ":8080"]
`
	fixture := func(files map[string]string) string {
		dir := t.TempDir()
		for name, body := range files {
			p := filepath.Join(dir, filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	kustomization := func(files map[string]string) func(t *testing.T) error {
		return func(t *testing.T) error {
			dir := fixture(files)
			docs, err := parseFile(filepath.Join(dir, "kustomization.yaml"))
			if err != nil {
				return err
			}
			return checkKustomization(dir, docs[0])
		}
	}
	runFileOK := map[string]string{
		"app/cmd/parley/main.go":    "package main\n",
		"components/redis/a.yaml":   "a: 1\n",
		"sidecar/config.yaml":       "a: 1\n",
		"deploy/resiliency/r.yaml":  "a: 1\n",
		"deploy/kustomization.yaml": "a: 1\n",
	}
	runFile := func(body string) func(t *testing.T) error {
		return func(t *testing.T) error {
			files := maps.Clone(runFileOK)
			files["deploy/dapr.yaml"] = body
			_, err := checkRunFile(filepath.Join(fixture(files), "deploy", "dapr.yaml"))
			return err
		}
	}
	const goodRun = `
version: 1
common:
  resourcesPaths: [../components/redis, ./resiliency]
  configFilePath: ../sidecar/config.yaml
apps:
  - appID: parley
    appDirPath: ..
    appPort: 8081
    env: {PARLEY_APP_PORT: "8081"}
    command: ["go", "run", "./app/cmd/parley", "-backend", "dapr", "-sidecar", "external"]
`

	cases := []struct {
		name    string
		run     func(t *testing.T) error
		wantErr string // empty: must pass
	}{
		{"accepts_valid_component", component(validComponent), ""},
		{"rejects_unclosed_flow_sequence", object("apiVersion: v1\nkind: [Service\nmetadata: {name: x}\n"), "yaml"},
		{"rejects_tab_indentation", object("apiVersion: v1\nkind: Service\nmetadata:\n\tname: x\n"), "yaml"},
		{"rejects_duplicate_key", object("apiVersion: v1\nkind: Service\nkind: Pod\nmetadata: {name: x}\n"), "already defined"},
		{"rejects_top_level_list", object("- apiVersion: v1\n  kind: Service\n"), "not a mapping"},
		{"rejects_object_without_name", object("apiVersion: v1\nkind: Service\nmetadata: {labels: {a: b}}\n"), "metadata.name"},
		{"rejects_object_without_api_version", object("kind: Service\nmetadata: {name: x}\n"), "apiVersion"},
		{"rejects_component_without_version", component(strings.Replace(validComponent, "  version: v1\n", "", 1)), "spec.version"},
		{"rejects_component_without_type", component(strings.Replace(validComponent, "  type: state.redis\n", "", 1)), "no spec.type"},
		{"rejects_component_with_unknown_name", component(strings.Replace(validComponent, "name: statestore", "name: cache", 1)), "the name must be one parley uses"},
		{"rejects_component_type_not_matching_name", component(strings.Replace(validComponent, "state.redis", "pubsub.redis", 1)), "does not start with"},
		{"rejects_metadata_with_value_and_secret_ref", component(strings.Replace(validComponent, "secretKeyRef:", "value: x\n      secretKeyRef:", 1)), "both value and secretKeyRef"},
		{"rejects_scopes_without_app_id", component(strings.Replace(validComponent, "scopes: [parley]", "scopes: [other]", 1)), "do not include the app-id"},
		{"rejects_plain_text_password", component(strings.Replace(validComponent, "secretKeyRef: {name: parley-redis, key: password}", `value: "hunter2"`, 1)), "must come from a secretKeyRef"},
		{"rejects_password_in_connection_string", component(strings.Replace(validComponent, `"redis:6379"`, `"host=pg user=u password=p"`, 1)), "plain text"},
		{"rejects_loopback_host_in_cluster", component(strings.Replace(validComponent, `"redis:6379"`, `"127.0.0.1:6379"`, 1)), "loopback"},
		{"rejects_overlay_that_drops_a_setting", func(t *testing.T) error {
			o, err := parseDocs([]byte(validComponent))
			if err != nil {
				return err
			}
			p, err := parseDocs([]byte(validComponent + "---\n"))
			if err != nil {
				return err
			}
			// The profile has a setting that the overlay lacks.
			spec := p[0]["spec"].(map[string]any)
			spec["metadata"] = append(list(spec, "metadata"), map[string]any{"name": "ttl", "value": "1"})
			return checkOverlayMatchesProfile(map[string]doc{"statestore": o[0]}, map[string]doc{"statestore": p[0]})
		}, `metadata "ttl"`},
		{"accepts_kustomization_with_existing_paths", kustomization(map[string]string{
			"kustomization.yaml": "resources: [a.yaml, base]\npatches: [{path: p.yaml}]\nconfigMapGenerator: [{name: s, files: [k=s.yaml]}]\n",
			"a.yaml":             "a: 1\n", "p.yaml": "a: 1\n", "s.yaml": "a: 1\n",
			"base/kustomization.yaml": "resources: []\n",
		}), ""},
		{"rejects_kustomization_missing_resource", kustomization(map[string]string{
			"kustomization.yaml": "resources: [a.yaml, missing.yaml]\n", "a.yaml": "a: 1\n",
		}), "missing.yaml does not exist"},
		{"rejects_kustomization_missing_patch", kustomization(map[string]string{
			"kustomization.yaml": "resources: [a.yaml]\npatches: [{path: gone.yaml}]\n", "a.yaml": "a: 1\n",
		}), "gone.yaml does not exist"},
		{"rejects_kustomization_folder_without_kustomization", kustomization(map[string]string{
			"kustomization.yaml": "resources: [base]\n", "base/a.yaml": "a: 1\n",
		}), "without a kustomization.yaml"},
		{"accepts_valid_dockerfile", func(t *testing.T) error { return checkDockerfile(validDockerfile, "1.26") }, ""},
		{"rejects_dockerfile_without_build_stage", func(t *testing.T) error {
			return checkDockerfile(strings.Replace(validDockerfile, " AS build", "", 1), "1.26")
		}, "AS build"},
		{"rejects_dockerfile_running_as_root", func(t *testing.T) error {
			return checkDockerfile(strings.Replace(validDockerfile, "USER 65532:65532", "USER root", 1), "1.26")
		}, "runs as USER root"},
		{"rejects_dockerfile_without_user", func(t *testing.T) error {
			return checkDockerfile(strings.Replace(validDockerfile, "USER 65532:65532\n", "", 1), "1.26")
		}, "no USER"},
		{"rejects_dockerfile_with_other_go_version", func(t *testing.T) error { return checkDockerfile(validDockerfile, "1.25") }, "want golang:1.25"},
		{"rejects_dockerfile_with_cgo", func(t *testing.T) error {
			return checkDockerfile(strings.Replace(validDockerfile, "CGO_ENABLED=0 ", "", 1), "1.26")
		}, "CGO_ENABLED=0"},
		{"accepts_valid_run_file", runFile(goodRun), ""},
		{"rejects_run_file_missing_resources_path", runFile(strings.Replace(goodRun, "../components/redis", "../components/nope", 1)), "resources path"},
		{"rejects_run_file_resources_path_relative_to_wrong_folder", runFile(strings.Replace(goodRun,
			"    appPort: 8081\n", "    appPort: 8081\n    resourcesPaths: [../components/redis]\n", 1)), "resources path"},
		{"rejects_run_file_without_version", runFile(strings.Replace(goodRun, "version: 1\n", "", 1)), "version 0"},
		{"rejects_run_file_with_bad_yaml", runFile(goodRun + "  - appID: [\n"), "yaml"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			err := c.run(t)
			switch {
			case c.wantErr == "" && err != nil:
				t.Errorf("rejected a valid input: %v", err)
			case c.wantErr != "" && err == nil:
				t.Errorf("accepted a broken input; want an error containing %q", c.wantErr)
			case c.wantErr != "" && !strings.Contains(err.Error(), c.wantErr):
				t.Errorf("error %q does not contain %q", err, c.wantErr)
			}
		})
	}
}
