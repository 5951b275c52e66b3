// Package infra_test checks the SAM template (template.yaml at the
// repository root) against the code it deploys: runtimes and builds, the
// streaming function URL, the table's TTL attribute, the environment each
// function reads (derived from internal/config), the units of parameters,
// and least-privilege IAM derived from the store's declared actions.
// cfn-lint validates the template against CloudFormation itself (make
// lint-template, part of make test).
package infra_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/webhook-relay/webhook-relay/internal/config"
	"github.com/webhook-relay/webhook-relay/internal/ingest"
	"github.com/webhook-relay/webhook-relay/internal/store/dynamostore"
	"github.com/webhook-relay/webhook-relay/internal/stream"
)

const templatePath = "../template.yaml"

// templateFunction is one of the template's Lambda functions and what it runs.
type templateFunction struct {
	logicalID string
	component config.Component
	// storeMethods are the store methods the function's handler calls: the
	// methods of the interface it takes.
	storeMethods []string
}

var functions = []templateFunction{
	{"WebhookFunction", config.Webhook, methodNames(reflect.TypeFor[ingest.Store]())},
	{"StreamFunction", config.Stream, methodNames(reflect.TypeFor[stream.Store]())},
}

func methodNames(t reflect.Type) []string {
	var names []string
	for i := range t.NumMethod() {
		names = append(names, t.Method(i).Name)
	}
	return names
}

// ---- reading the template --------------------------------------------------

// node is a decoded YAML value: map[string]any, []any, string, int, float64,
// bool or nil. CloudFormation's short-form tags become their long form:
// !Ref X is {"Ref": "X"}, !GetAtt A.B is {"Fn::GetAtt": ["A", "B"]}, !Sub s
// is {"Fn::Sub": s}, and so on.
type node = any

func loadTemplate(t *testing.T) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(templatePath)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("template.yaml: %v", err)
	}
	v, err := convert(&doc)
	if err != nil {
		t.Fatalf("template.yaml: %v", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("template.yaml: top level is %T, want a mapping", v)
	}
	return m
}

func convert(n *yaml.Node) (node, error) {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil, nil
		}
		return convert(n.Content[0])
	}
	if n.Kind == yaml.AliasNode {
		return convert(n.Alias)
	}
	if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
		name := n.Tag[1:]
		inner := *n
		inner.Tag = ""
		if n.Kind == yaml.ScalarNode {
			inner.Tag = "!!str"
		}
		v, err := convert(&inner)
		if err != nil {
			return nil, err
		}
		switch name {
		case "Ref", "Condition":
			return map[string]any{name: v}, nil
		case "GetAtt":
			if s, ok := v.(string); ok {
				res, attr, _ := strings.Cut(s, ".")
				v = []any{res, attr}
			}
		}
		return map[string]any{"Fn::" + name: v}, nil
	}
	switch n.Kind {
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, err := convert(n.Content[i])
			if err != nil {
				return nil, err
			}
			ks, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("line %d: non-string key %v", n.Content[i].Line, k)
			}
			if _, dup := m[ks]; dup {
				return nil, fmt.Errorf("line %d: duplicate key %q", n.Content[i].Line, ks)
			}
			if m[ks], err = convert(n.Content[i+1]); err != nil {
				return nil, err
			}
		}
		return m, nil
	case yaml.SequenceNode:
		s := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := convert(c)
			if err != nil {
				return nil, err
			}
			s = append(s, v)
		}
		return s, nil
	default:
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, fmt.Errorf("line %d: %v", n.Line, err)
		}
		return v, nil
	}
}

// get walks path (mapping keys) from v; nil when any step is missing.
func get(v node, path ...string) node {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

func mapAt(t *testing.T, v node, path ...string) map[string]any {
	t.Helper()
	m, ok := get(v, path...).(map[string]any)
	if !ok {
		t.Fatalf("%s: want a mapping, have %#v", strings.Join(path, "."), get(v, path...))
	}
	return m
}

// scalar renders a YAML scalar as CloudFormation sees it: a string.
func scalar(v node) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case int:
		return strconv.Itoa(x), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}

// ---- evaluating intrinsic functions ------------------------------------------

// noValue is what !Ref AWS::NoValue evaluates to: the property is removed.
type noValueT struct{}

var noValue noValueT

// evaluator resolves intrinsic functions with given parameter values.
// References to resources evaluate to "<Ref:Name>", attributes to
// "<Name.Attr>": placeholders, since only the deployed stack knows them.
type evaluator struct {
	tmpl   map[string]any
	params map[string]string
}

func newEvaluator(t *testing.T, tmpl map[string]any, overrides map[string]string) *evaluator {
	t.Helper()
	e := &evaluator{tmpl: tmpl, params: map[string]string{}}
	for name, p := range mapAt(t, tmpl, "Parameters") {
		if d, ok := scalar(get(p, "Default")); ok {
			e.params[name] = d
		}
	}
	for k, v := range overrides {
		e.params[k] = v
	}
	return e
}

func (e *evaluator) ref(name string) (any, error) {
	switch name {
	case "AWS::NoValue":
		return noValue, nil
	case "AWS::Region":
		return "us-east-1", nil
	case "AWS::URLSuffix":
		return "amazonaws.com", nil
	case "AWS::StackName":
		return "webhook-relay", nil
	case "AWS::AccountId":
		return "123456789012", nil
	case "AWS::Partition":
		return "aws", nil
	}
	if v, ok := e.params[name]; ok {
		return v, nil
	}
	if get(e.tmpl, "Parameters", name) != nil {
		return nil, fmt.Errorf("parameter %s has no value (no Default)", name)
	}
	// SAM generates <Function>Url for a FunctionUrlConfig.
	fn, isURL := strings.CutSuffix(name, "Url")
	if get(e.tmpl, "Resources", name) != nil || (isURL && get(e.tmpl, "Resources", fn, "Properties", "FunctionUrlConfig") != nil) {
		return "<Ref:" + name + ">", nil
	}
	return nil, fmt.Errorf("!Ref %s: no such parameter or resource", name)
}

var subVar = regexp.MustCompile(`\$\{([^}]*)\}`)

func (e *evaluator) eval(v node) (any, error) {
	switch x := v.(type) {
	case []any:
		out := make([]any, 0, len(x))
		for _, it := range x {
			r, err := e.eval(it)
			if err != nil {
				return nil, err
			}
			if r != noValue {
				out = append(out, r)
			}
		}
		return out, nil
	case map[string]any:
		if len(x) == 1 {
			for k, arg := range x {
				if k == "Ref" || strings.HasPrefix(k, "Fn::") {
					return e.fn(k, arg)
				}
			}
		}
		out := make(map[string]any, len(x))
		for k, it := range x {
			r, err := e.eval(it)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			if r != noValue {
				out[k] = r
			}
		}
		return out, nil
	}
	return v, nil
}

func (e *evaluator) str(v node) (string, error) {
	r, err := e.eval(v)
	if err != nil {
		return "", err
	}
	s, ok := scalar(r)
	if !ok {
		return "", fmt.Errorf("want a string, have %#v", r)
	}
	return s, nil
}

func (e *evaluator) fn(name string, arg node) (any, error) {
	args, _ := arg.([]any)
	switch name {
	case "Ref":
		s, _ := arg.(string)
		return e.ref(s)
	case "Fn::GetAtt":
		if len(args) != 2 {
			return nil, fmt.Errorf("!GetAtt %v", arg)
		}
		return fmt.Sprintf("<%v.%v>", args[0], args[1]), nil
	case "Fn::Sub":
		text, vars := arg, map[string]any{}
		if len(args) == 2 {
			text = args[0]
			vars, _ = args[1].(map[string]any)
		}
		s, ok := text.(string)
		if !ok {
			return nil, fmt.Errorf("!Sub %v", arg)
		}
		var firstErr error
		out := subVar.ReplaceAllStringFunc(s, func(m string) string {
			name := m[2 : len(m)-1]
			if strings.HasPrefix(name, "!") {
				return "${" + name[1:] + "}"
			}
			var r any
			var err error
			if v, ok := vars[name]; ok {
				r, err = e.str(v)
			} else if res, attr, ok := strings.Cut(name, "."); ok {
				r = "<" + res + "." + attr + ">"
			} else {
				r, err = e.ref(name)
			}
			if err != nil && firstErr == nil {
				firstErr = err
			}
			s, _ := scalar(r)
			return s
		})
		return out, firstErr
	case "Fn::If":
		if len(args) != 3 {
			return nil, fmt.Errorf("!If %v", arg)
		}
		cond, _ := args[0].(string)
		ok, err := e.condition(cond)
		if err != nil {
			return nil, err
		}
		if ok {
			return e.eval(args[1])
		}
		return e.eval(args[2])
	case "Fn::Split":
		if len(args) != 2 {
			return nil, fmt.Errorf("!Split %v", arg)
		}
		sep, _ := args[0].(string)
		s, err := e.str(args[1])
		if err != nil {
			return nil, err
		}
		var out []any
		for p := range strings.SplitSeq(s, sep) {
			out = append(out, p)
		}
		return out, nil
	case "Fn::Join":
		if len(args) != 2 {
			return nil, fmt.Errorf("!Join %v", arg)
		}
		sep, _ := args[0].(string)
		list, err := e.eval(args[1])
		if err != nil {
			return nil, err
		}
		var parts []string
		for _, it := range list.([]any) {
			s, _ := scalar(it)
			parts = append(parts, s)
		}
		return strings.Join(parts, sep), nil
	}
	return nil, fmt.Errorf("intrinsic function %s is not supported by this test", name)
}

func (e *evaluator) condition(name string) (bool, error) {
	c := get(e.tmpl, "Conditions", name)
	if c == nil {
		return false, fmt.Errorf("no condition %s", name)
	}
	return e.cond(c)
}

func (e *evaluator) cond(v node) (bool, error) {
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 {
		return false, fmt.Errorf("condition %#v", v)
	}
	for k, arg := range m {
		args, _ := arg.([]any)
		switch k {
		case "Condition":
			s, _ := arg.(string)
			return e.condition(s)
		case "Fn::Equals":
			if len(args) != 2 {
				return false, fmt.Errorf("!Equals %v", arg)
			}
			a, err := e.str(args[0])
			if err != nil {
				return false, err
			}
			b, err := e.str(args[1])
			return a == b, err
		case "Fn::Not":
			if len(args) != 1 {
				return false, fmt.Errorf("!Not %v", arg)
			}
			b, err := e.cond(args[0])
			return !b, err
		case "Fn::And", "Fn::Or":
			all := k == "Fn::And"
			for _, a := range args {
				b, err := e.cond(a)
				if err != nil {
					return false, err
				}
				if b != all {
					return !all, nil
				}
			}
			return all, nil
		}
		return false, fmt.Errorf("condition function %s is not supported by this test", k)
	}
	return false, nil
}

// ---- the checks ----------------------------------------------------------

// property is a function's effective property: its own, else Globals'.
func property(tmpl map[string]any, fn, name string) node {
	if v := get(tmpl, "Resources", fn, "Properties", name); v != nil {
		return v
	}
	return get(tmpl, "Globals", "Function", name)
}

// environment is a function's effective environment: Globals' variables
// overridden by its own, evaluated with the given parameter values.
func environment(t *testing.T, e *evaluator, fn string) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, src := range []node{
		get(e.tmpl, "Globals", "Function", "Environment", "Variables"),
		get(e.tmpl, "Resources", fn, "Properties", "Environment", "Variables"),
	} {
		if src == nil {
			continue
		}
		m, ok := src.(map[string]any)
		if !ok {
			t.Fatalf("%s: Environment.Variables is %#v", fn, src)
		}
		for k, v := range m {
			s, err := e.str(v)
			if err != nil {
				t.Fatalf("%s: environment variable %s: %v", fn, k, err)
			}
			env[k] = s
		}
	}
	return env
}

func TestTemplateHeader(t *testing.T) {
	tmpl := loadTemplate(t)
	if got := get(tmpl, "Transform"); got != "AWS::Serverless-2016-10-31" {
		t.Errorf("Transform = %v, want AWS::Serverless-2016-10-31 (SAM)", got)
	}
	var fns []string
	for id, r := range mapAt(t, tmpl, "Resources") {
		if get(r, "Type") == "AWS::Serverless::Function" || get(r, "Type") == "AWS::Lambda::Function" {
			fns = append(fns, id)
		}
	}
	slices.Sort(fns)
	if want := []string{"StreamFunction", "WebhookFunction"}; !slices.Equal(fns, want) {
		t.Errorf("functions %v, want %v", fns, want)
	}
}

func TestFunctionsRuntimeAndBuild(t *testing.T) {
	tmpl := loadTemplate(t)
	makefile, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range functions {
		t.Run(f.logicalID, func(t *testing.T) {
			// cfn-lint rejects properties set both in Globals and in the function.
			for _, p := range []string{"Runtime", "Architectures", "Handler"} {
				if get(tmpl, "Globals", "Function", p) != nil && get(tmpl, "Resources", f.logicalID, "Properties", p) != nil {
					t.Errorf("%s is set both in Globals and in %s", p, f.logicalID)
				}
			}
			if got := property(tmpl, f.logicalID, "Runtime"); got != "provided.al2023" {
				t.Errorf("Runtime = %v, want provided.al2023", got)
			}
			if got := property(tmpl, f.logicalID, "Handler"); got != "bootstrap" {
				t.Errorf("Handler = %v, want bootstrap", got)
			}
			if got := property(tmpl, f.logicalID, "Architectures"); !reflect.DeepEqual(got, []any{"arm64"}) {
				t.Errorf("Architectures = %v, want [arm64]", got)
			}
			if got := get(tmpl, "Resources", f.logicalID, "Metadata", "BuildMethod"); got != "makefile" {
				t.Errorf("Metadata.BuildMethod = %v, want makefile", got)
			}
			// sam build runs `make build-<LogicalId>` in CodeUri.
			if got := property(tmpl, f.logicalID, "CodeUri"); got != "." {
				t.Errorf("CodeUri = %v, want . (where the Makefile is)", got)
			}
			target := regexp.MustCompile(`(?m)^build-` + f.logicalID + `:.*\n((?:\t.*\n)+)`).FindSubmatch(makefile)
			if target == nil {
				t.Fatalf("Makefile has no target build-%s with a recipe", f.logicalID)
			}
			if !strings.Contains(string(target[1]), "$(ARTIFACTS_DIR)/bootstrap") {
				t.Errorf("Makefile target build-%s does not write $(ARTIFACTS_DIR)/bootstrap:\n%s", f.logicalID, target[1])
			}
		})
	}
}

// TestStreamFunctionURL: the stream function and, in the FunctionUrl shape,
// its URL (the transformed template's fronts are checked in
// transform_test.go).
func TestStreamFunctionURL(t *testing.T) {
	tmpl := loadTemplate(t)
	if got := get(tmpl, "Resources", "StreamFunction", "Properties", "Timeout"); got != 900 {
		t.Errorf("StreamFunction Timeout = %v, want 900 (Lambda's maximum)", got)
	}
	if get(tmpl, "Resources", "StreamFunction", "Properties", "FunctionUrlConfig") != nil {
		t.Error("StreamFunction has a FunctionUrlConfig: SAM makes its URL unconditionally, also in the RestApi shape")
	}
	urlRes := mapAt(t, tmpl, "Resources", "StreamFunctionUrl")
	if urlRes["Type"] != "AWS::Lambda::Url" || urlRes["Condition"] != "UseFunctionUrl" {
		t.Errorf("StreamFunctionUrl: %v, condition %v; want an AWS::Lambda::Url in the FunctionUrl shape only", urlRes["Type"], urlRes["Condition"])
	}
	url := mapAt(t, urlRes, "Properties")
	if url["InvokeMode"] != "RESPONSE_STREAM" {
		t.Errorf("InvokeMode = %v, want RESPONSE_STREAM", url["InvokeMode"])
	}
	if url["AuthType"] != "NONE" {
		t.Errorf("AuthType = %v, want NONE (browsers' EventSource cannot sign)", url["AuthType"])
	}
	// GET for the stream, POST for the close beacon; nothing else.
	if !reflect.DeepEqual(get(url, "Cors", "AllowMethods"), []any{"GET", "POST"}) {
		t.Errorf("Cors.AllowMethods = %v, want [GET POST]", get(url, "Cors", "AllowMethods"))
	}
	if got := get(tmpl, "Resources", "StreamFunction", "Properties", "ReservedConcurrentExecutions"); !mentions(got, "StreamReservedConcurrency") {
		t.Errorf("StreamFunction ReservedConcurrentExecutions = %v, want it from the StreamReservedConcurrency parameter", got)
	}
	// The planned end comes before the deadline for every allowed heartbeat.
	timeout := 900 * time.Second
	for _, hb := range candidates(get(tmpl, "Parameters", "HeartbeatSeconds")) {
		e := newEvaluator(t, tmpl, map[string]string{"HeartbeatSeconds": hb})
		cfg, err := config.Load(config.Stream, getenv(environment(t, e, "StreamFunction")))
		if err != nil {
			t.Fatal(err)
		}
		end := min(cfg.MaxStreamDuration, timeout-cfg.StreamDeadlineMargin)
		if end <= 0 || end >= timeout || cfg.HeartbeatInterval >= end {
			t.Errorf("HeartbeatSeconds=%s: planned end after %v (heartbeat %v), timeout %v", hb, end, cfg.HeartbeatInterval, timeout)
		}
	}
}

// mentions reports whether v refers to name (Ref, or ${name} in a Sub).
func mentions(v node, name string) bool {
	switch x := v.(type) {
	case string:
		return strings.Contains(x, "${"+name+"}")
	case []any:
		return slices.ContainsFunc(x, func(it any) bool { return mentions(it, name) })
	case map[string]any:
		if x["Ref"] == name {
			return true
		}
		for _, it := range x {
			if mentions(it, name) {
				return true
			}
		}
	}
	return false
}

// TestFronts: the functions have no SAM events (they would make their
// routes and permissions in every shape); each shape's API is declared with
// its own condition and stage throttling from the parameters. What they
// route where is checked on the transformed template (transform_test.go).
func TestFronts(t *testing.T) {
	tmpl := loadTemplate(t)
	for _, f := range functions {
		if get(tmpl, "Resources", f.logicalID, "Properties", "Events") != nil {
			t.Errorf("%s has Events: SAM cannot make them conditional on StreamEndpoint", f.logicalID)
		}
	}
	for _, api := range []struct{ id, typ, condition, throttle string }{
		{"WebhookApi", "AWS::Serverless::HttpApi", "UseFunctionUrl", "DefaultRouteSettings"},
		{"RelayApi", "AWS::Serverless::Api", "UseRestApi", "MethodSettings"},
	} {
		r := get(tmpl, "Resources", api.id)
		if get(r, "Type") != api.typ || get(r, "Condition") != api.condition {
			t.Errorf("%s: %v with condition %v, want %s with %s", api.id, get(r, "Type"), get(r, "Condition"), api.typ, api.condition)
		}
		throttle := get(r, "Properties", api.throttle)
		for _, p := range []string{"ApiThrottlingRateLimit", "ApiThrottlingBurstLimit"} {
			if !mentions(throttle, p) {
				t.Errorf("%s: stage throttling does not use parameter %s: %v", api.id, p, throttle)
			}
		}
	}
	for _, shape := range []string{"FunctionUrl", "RestApi"} {
		e := newEvaluator(t, tmpl, map[string]string{"StreamEndpoint": shape})
		rest, err := e.condition("UseRestApi")
		if err != nil {
			t.Fatal(err)
		}
		url, err := e.condition("UseFunctionUrl")
		if err != nil {
			t.Fatal(err)
		}
		if rest == url || rest != (shape == "RestApi") {
			t.Errorf("StreamEndpoint=%s: UseRestApi %v, UseFunctionUrl %v", shape, rest, url)
		}
	}
}

func TestTable(t *testing.T) {
	tmpl := loadTemplate(t)
	var tables []string
	for id, r := range mapAt(t, tmpl, "Resources") {
		if get(r, "Type") == "AWS::DynamoDB::Table" {
			tables = append(tables, id)
		}
	}
	if len(tables) != 1 {
		t.Fatalf("tables %v, want exactly one", tables)
	}
	p := mapAt(t, tmpl, "Resources", tables[0], "Properties")
	if got := get(p, "TimeToLiveSpecification", "AttributeName"); got != dynamostore.TTLAttribute {
		t.Errorf("TTL attribute %v, want %q (dynamostore.TTLAttribute)", got, dynamostore.TTLAttribute)
	}
	if got := get(p, "TimeToLiveSpecification", "Enabled"); got != true {
		t.Errorf("TTL Enabled = %v", got)
	}
	if p["BillingMode"] != "PAY_PER_REQUEST" {
		t.Errorf("BillingMode = %v, want PAY_PER_REQUEST", p["BillingMode"])
	}
	wantKeys := []any{
		map[string]any{"AttributeName": "pk", "KeyType": "HASH"},
		map[string]any{"AttributeName": "sk", "KeyType": "RANGE"},
	}
	if !reflect.DeepEqual(p["KeySchema"], wantKeys) {
		t.Errorf("KeySchema = %v, want pk HASH, sk RANGE", p["KeySchema"])
	}
	wantAttrs := []any{
		map[string]any{"AttributeName": "pk", "AttributeType": "S"},
		map[string]any{"AttributeName": "sk", "AttributeType": "S"},
	}
	if !reflect.DeepEqual(p["AttributeDefinitions"], wantAttrs) {
		t.Errorf("AttributeDefinitions = %v, want pk and sk strings", p["AttributeDefinitions"])
	}
	if got := get(p, "SSESpecification", "SSEEnabled"); got != true {
		t.Errorf("SSESpecification.SSEEnabled = %v, want true", got)
	}
	pitr := get(p, "PointInTimeRecoverySpecification", "PointInTimeRecoveryEnabled")
	for _, v := range []string{"true", "false"} {
		got, err := newEvaluator(t, tmpl, map[string]string{"PointInTimeRecovery": v}).eval(pitr)
		if err != nil {
			t.Fatal(err)
		}
		if s, _ := scalar(got); s != v {
			t.Errorf("PointInTimeRecovery=%s: PointInTimeRecoveryEnabled = %v", v, got)
		}
	}
}

// getenv serves env as os.Getenv would.
func getenv(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

func TestEnvironmentMatchesConfig(t *testing.T) {
	tmpl := loadTemplate(t)
	e := newEvaluator(t, tmpl, nil)
	for _, f := range functions {
		t.Run(f.logicalID, func(t *testing.T) {
			env := environment(t, e, f.logicalID)
			var want, got, localOnly []string
			for _, v := range config.Variables() {
				if v.UsedBy&f.component == 0 {
					continue
				}
				if v.LocalOnly {
					localOnly = append(localOnly, v.Name)
				} else {
					want = append(want, v.Name)
				}
			}
			for k, v := range env {
				// Declared empty so that sam local --env-vars may set it
				// (SAM local overrides declared variables only).
				if slices.Contains(localOnly, k) && v == "" {
					continue
				}
				got = append(got, k)
			}
			slices.Sort(want)
			slices.Sort(got)
			for _, k := range want {
				if _, ok := env[k]; !ok {
					t.Errorf("%s reads %s, which the template does not set", f.logicalID, k)
				}
			}
			for _, k := range got {
				if !slices.Contains(want, k) {
					t.Errorf("the template sets %s on %s, which it does not read (or is local-only)", k, f.logicalID)
				}
			}
			for _, k := range []string{"PORT", "HOST", "DYNAMODB_ENDPOINT"} {
				if !slices.Contains(localOnly, k) && slices.Contains(want, k) {
					t.Errorf("%s should be local-only in internal/config", k)
				}
			}
			if _, err := config.Load(f.component, getenv(env)); err != nil {
				t.Errorf("%s's environment with the parameters' defaults does not load: %v", f.logicalID, err)
			}
		})
	}
}

// unitChecks say, for each parameter that reaches an environment variable,
// what the function's configuration must hold for a parameter value: this is
// where the template's unit conversions (hours, seconds, milliseconds) are
// pinned. Every such parameter must have one.
var unitChecks = map[string]func(c config.Config, v string) (got, want any){
	"MessageTtlHours":           func(c config.Config, v string) (any, any) { return c.MessageTTL, hours(v) },
	"ReplayCount":               func(c config.Config, v string) (any, any) { return c.ReplayCount, atoi(v) },
	"HeartbeatSeconds":          func(c config.Config, v string) (any, any) { return c.HeartbeatInterval, seconds(v) },
	"PollIntervalMs":            func(c config.Config, v string) (any, any) { return c.PollInterval, millis(v) },
	"RateLimitPerMinute":        func(c config.Config, v string) (any, any) { return c.RateLimitPerMinute, atoi(v) },
	"SessionRateLimitPerMinute": func(c config.Config, v string) (any, any) { return c.SessionRateLimitPerMinute, atoi(v) },
	"WebhookSecret": func(c config.Config, v string) (any, any) {
		var want []string
		if v != "" {
			want = strings.Split(v, ",")
		}
		return c.WebhookSecrets, want
	},
	"LogSessionKey": func(c config.Config, v string) (any, any) { return c.LogSessionKey, v },
	"StreamTokenSecret": func(c config.Config, v string) (any, any) {
		var want [][]byte
		for _, sec := range strings.Split(v, ",") {
			if sec != "" {
				want = append(want, []byte(sec))
			}
		}
		return c.StreamTokenSecrets, want
	},
	"MaxStreamsPerIp":      func(c config.Config, v string) (any, any) { return c.MaxStreamsPerIP, atoi(v) },
	"MaxStreamsPerSession": func(c config.Config, v string) (any, any) { return c.MaxStreamsPerSession, atoi(v) },
	"WebhookSigningSecret": func(c config.Config, v string) (any, any) {
		want := []byte(nil)
		if v != "" {
			want, _ = base64.StdEncoding.DecodeString(strings.TrimPrefix(v, "whsec_"))
		}
		return c.SigningSecret, want
	},
	"AllowedOrigins": func(c config.Config, v string) (any, any) {
		return c.AllowedOrigins, strings.Split(v, ",")
	},
}

// samples are values beyond Default/MinValue/MaxValue/AllowedValues to try
// for string parameters; each must match the parameter's AllowedPattern.
var samples = map[string][]string{
	"WebhookSecret":        {"s3cret-Value_with!punctuation~", "new-s3cret,old-s3cret", "a,b,c"},
	"LogSessionKey":        {"k3y-Value_with!punctuation~,"},
	"WebhookSigningSecret": {"whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))},
	"AllowedOrigins":       {"*", "https://chat.example.com", "https://a.example.com,http://localhost:8080"},
	"StreamTokenSecret":    {"a-stream-token-secret-of-32-bytes!", "new-secret-of-thirty-two-bytes-xx,old-secret-of-thirty-two-bytes-yy"},
	"AlarmEmail":           {"ops@example.com", "first.last+relay@sub.example.co.uk"},
}

// rejected are values a parameter's AllowedPattern must refuse.
var rejected = map[string][]string{
	"WebhookSecret":        {"has space", ",", "new,,old", "new, old", "new,", "caf\u00e9"},
	"LogSessionKey":        {"has space", "caf\u00e9"},
	"WebhookSigningSecret": {"not-whsec", "whsec_"},
	"StreamTokenSecret":    {"too-short", "a-stream-token-secret-of-32-bytes!,short", "has a space in it and is long enough"},
	"AllowedOrigins":       {"", "https://a.example.com, https://b.example.com", "https://a.example.com/path", "example.com", "*,https://a.example.com"},
	"AlarmEmail":           {"ops", "ops@example", "a b@example.com", "a@example.com,b@example.com"},
}

func hours(v string) time.Duration   { return time.Duration(atoi(v)) * time.Hour }
func seconds(v string) time.Duration { return time.Duration(atoi(v)) * time.Second }
func millis(v string) time.Duration  { return time.Duration(atoi(v)) * time.Millisecond }
func atoi(v string) int {
	n, err := strconv.Atoi(v)
	if err != nil {
		panic(err)
	}
	return n
}

func TestParameters(t *testing.T) {
	tmpl := loadTemplate(t)
	params := mapAt(t, tmpl, "Parameters")
	for _, name := range []string{"WebhookSecret", "MessageTtlHours", "ReplayCount", "HeartbeatSeconds",
		"PollIntervalMs", "AllowedOrigins", "RateLimitPerMinute", "LogRetentionDays",
		"PointInTimeRecovery", "StreamReservedConcurrency", "ApiThrottlingRateLimit", "ApiThrottlingBurstLimit",
		"StreamEndpoint", "AlarmEmail"} {
		if params[name] == nil {
			t.Errorf("parameter %s is missing", name)
		}
	}
	for _, secret := range []string{"WebhookSecret", "WebhookSigningSecret", "LogSessionKey"} {
		if get(params, secret, "NoEcho") != true {
			t.Errorf("%s must be NoEcho", secret)
		}
		if d := get(params, secret, "Default"); d != "" {
			t.Errorf("%s Default = %v, want empty (optional)", secret, d)
		}
	}
	for name, p := range params {
		if s, _ := get(p, "Description").(string); len(s) < 20 {
			t.Errorf("parameter %s needs a description", name)
		}
		constrained := get(p, "AllowedValues") != nil
		switch get(p, "Type") {
		case "Number":
			constrained = constrained || (get(p, "MinValue") != nil && get(p, "MaxValue") != nil)
		case "String":
			constrained = constrained || get(p, "AllowedPattern") != nil
		}
		if !constrained {
			t.Errorf("parameter %s needs constraints (AllowedValues, MinValue+MaxValue, or AllowedPattern)", name)
		}
		if pat, ok := get(p, "AllowedPattern").(string); ok {
			re, err := regexp.Compile(pat)
			if err != nil {
				t.Errorf("parameter %s: AllowedPattern: %v", name, err)
				continue
			}
			for _, v := range append(candidates(p), samples[name]...) {
				if !re.MatchString(v) {
					t.Errorf("parameter %s: AllowedPattern refuses %q", name, v)
				}
			}
			for _, v := range rejected[name] {
				if re.MatchString(v) {
					t.Errorf("parameter %s: AllowedPattern accepts %q", name, v)
				}
			}
		}
	}
}

// candidates are the values of a parameter worth trying: its default and
// its bounds or allowed values.
func candidates(p node) []string {
	var out []string
	for _, k := range []string{"Default", "MinValue", "MaxValue"} {
		if s, ok := scalar(get(p, k)); ok {
			out = append(out, s)
		}
	}
	if vs, ok := get(p, "AllowedValues").([]any); ok {
		for _, v := range vs {
			s, _ := scalar(v)
			out = append(out, s)
		}
	}
	return out
}

// TestParameterUnits sets every parameter that reaches a function's
// environment to each of its candidate values, loads that function's
// configuration through internal/config, and checks the value arrived in
// the right unit. It also checks that the function URL's CORS origins and
// ALLOWED_ORIGINS agree.
func TestParameterUnits(t *testing.T) {
	tmpl := loadTemplate(t)
	params := mapAt(t, tmpl, "Parameters")
	used := map[string]bool{}
	for name, p := range params {
		for _, f := range functions {
			vars := []node{
				get(tmpl, "Globals", "Function", "Environment", "Variables"),
				get(tmpl, "Resources", f.logicalID, "Properties", "Environment", "Variables"),
			}
			if !mentions(vars, name) {
				continue
			}
			used[name] = true
			check, ok := unitChecks[name]
			if !ok {
				t.Errorf("parameter %s reaches %s's environment but has no entry in unitChecks", name, f.logicalID)
				continue
			}
			for _, v := range append(candidates(p), samples[name]...) {
				e := newEvaluator(t, tmpl, map[string]string{name: v})
				cfg, err := config.Load(f.component, getenv(environment(t, e, f.logicalID)))
				if err != nil {
					t.Errorf("%s=%q: %s's configuration does not load: %v", name, v, f.logicalID, err)
					continue
				}
				if got, want := check(cfg, v); !reflect.DeepEqual(got, want) {
					t.Errorf("%s=%q: %s's configuration holds %v, want %v", name, v, f.logicalID, got, want)
				}
				if name == "AllowedOrigins" && f.logicalID == "StreamFunction" {
					cors, err := e.eval(get(tmpl, "Resources", "StreamFunctionUrl", "Properties", "Cors", "AllowOrigins"))
					if err != nil {
						t.Fatal(err)
					}
					var origins []string
					for _, o := range cors.([]any) {
						origins = append(origins, o.(string))
					}
					if !slices.Equal(origins, cfg.AllowedOrigins) {
						t.Errorf("AllowedOrigins=%q: function URL CORS allows %q, ALLOWED_ORIGINS %q", v, origins, cfg.AllowedOrigins)
					}
				}
			}
		}
	}
	for name := range unitChecks {
		if !used[name] {
			t.Errorf("unitChecks has %s, which reaches no function's environment", name)
		}
	}
}

func TestLeastPrivilege(t *testing.T) {
	tmpl := loadTemplate(t)
	var tableID string
	for id, r := range mapAt(t, tmpl, "Resources") {
		if get(r, "Type") == "AWS::DynamoDB::Table" {
			tableID = id
		}
	}
	for _, f := range functions {
		t.Run(f.logicalID, func(t *testing.T) {
			want, err := dynamostore.IAMActions(f.storeMethods...)
			if err != nil {
				t.Fatal(err)
			}
			if get(tmpl, "Resources", f.logicalID, "Properties", "Role") != nil {
				t.Fatal("a Role of its own bypasses Policies; use Policies")
			}
			policies, ok := get(tmpl, "Resources", f.logicalID, "Properties", "Policies").([]any)
			if !ok {
				t.Fatalf("Policies = %#v, want a list of inline policy documents", get(tmpl, "Resources", f.logicalID, "Properties", "Policies"))
			}
			var got []string
			for _, p := range policies {
				stmts, ok := get(p, "Statement").([]any)
				if !ok {
					t.Errorf("policy %v is not an inline policy document (SAM policy templates and managed policies grant more than the store uses)", p)
					continue
				}
				for _, s := range stmts {
					if get(s, "Effect") != "Allow" {
						continue
					}
					var actions []string
					switch a := get(s, "Action").(type) {
					case string:
						actions = []string{a}
					case []any:
						for _, x := range a {
							actions = append(actions, fmt.Sprint(x))
						}
					}
					for _, a := range actions {
						if strings.Contains(a, "*") {
							t.Errorf("wildcard action %s", a)
						}
						if !strings.HasPrefix(a, "dynamodb:") {
							t.Errorf("action %s: the functions need DynamoDB only (logging comes with SAM's basic execution role)", a)
						}
					}
					res := get(s, "Resource")
					if !reflect.DeepEqual(res, map[string]any{"Fn::GetAtt": []any{tableID, "Arn"}}) {
						t.Errorf("statement %v: Resource = %v, want !GetAtt %s.Arn only", get(s, "Sid"), res, tableID)
					}
					got = append(got, actions...)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("IAM actions %v; the store operations %s uses (%v, and opening the store) need exactly %v",
					got, f.logicalID, f.storeMethods, want)
			}
		})
	}
}

func TestLogGroups(t *testing.T) {
	tmpl := loadTemplate(t)
	for _, f := range functions {
		found := false
		for id, r := range mapAt(t, tmpl, "Resources") {
			if get(r, "Type") != "AWS::Logs::LogGroup" || get(r, "Properties", "LogGroupName", "Fn::Sub") != "/aws/lambda/${"+f.logicalID+"}" {
				continue
			}
			found = true
			if get(r, "Properties", "RetentionInDays", "Ref") != "LogRetentionDays" {
				t.Errorf("%s: RetentionInDays = %v, want !Ref LogRetentionDays", id, get(r, "Properties", "RetentionInDays"))
			}
		}
		if !found {
			t.Errorf("no AWS::Logs::LogGroup named /aws/lambda/${%s} (with retention)", f.logicalID)
		}
	}
}

// TestSAMLocalEnv: events/env.json, the --env-vars file of docs/deploy.md's
// SAM local commands, sets only variables the template declares on each
// function: SAM local silently ignores any other. Every sample event there
// is documented.
func TestSAMLocalEnv(t *testing.T) {
	tmpl := loadTemplate(t)
	raw, err := os.ReadFile("../events/env.json")
	if err != nil {
		t.Fatal(err)
	}
	var env map[string]map[string]string
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatalf("events/env.json: %v", err)
	}
	e := newEvaluator(t, tmpl, nil)
	for fn, vars := range env {
		if !slices.ContainsFunc(functions, func(f templateFunction) bool { return f.logicalID == fn }) {
			t.Errorf("events/env.json sets variables of %s, which is no function of the template", fn)
			continue
		}
		declared := environment(t, e, fn)
		for k := range vars {
			if _, ok := declared[k]; !ok {
				t.Errorf("events/env.json sets %s on %s, which the template does not declare: sam local would ignore it", k, fn)
			}
		}
	}
	doc, err := os.ReadFile("../docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	samples, err := filepath.Glob("../events/*.json")
	if err != nil || len(samples) < 5 {
		t.Fatalf("events/*.json: %v %v", samples, err)
	}
	for _, p := range samples {
		if name := "events/" + filepath.Base(p); !strings.Contains(string(doc), name) {
			t.Errorf("docs/deploy.md does not mention %s", name)
		}
	}
}
