package infra_test

// The template as CloudFormation gets it: transformed by the installed
// aws-sam-translator (infra/sam-transform.py), for each shape of the
// StreamEndpoint parameter, then checked resource by resource with the
// conditions evaluated as CloudFormation would for those parameters.

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/webhook-relay/webhook-relay/internal/ingest"
	"github.com/webhook-relay/webhook-relay/internal/metrics"
	"github.com/webhook-relay/webhook-relay/internal/store/dynamostore"
	"github.com/webhook-relay/webhook-relay/internal/stream"
	"github.com/webhook-relay/webhook-relay/internal/testutil"
	"github.com/webhook-relay/webhook-relay/tools/lambdaemu"
)

// The values of the StreamEndpoint parameter.
const (
	functionURLShape = "FunctionUrl"
	restAPIShape     = "RestApi"
)

var shapes = []string{functionURLShape, restAPIShape}

// basicExecutionRole is the one managed policy a function role may have:
// logging (SAM's default).
const basicExecutionRole = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"

// emittedMetric is how one of the relay's own metrics reaches CloudWatch:
// the function that writes it and its dimensions.
type emittedMetric struct {
	function   string
	dimensions []string
}

// relayMetrics asks internal/metrics itself which metrics each function
// writes, under which dimensions: the EMF directives of a log line for every
// kind of event.
func relayMetrics(t *testing.T) map[string]emittedMetric {
	t.Helper()
	rec := metrics.EMF{Function: "f"}
	events := map[string][][]slog.Attr{
		"WebhookFunction": {
			rec.Webhook(metrics.Webhook{Status: 200, Listeners: 2}),
			rec.Webhook(metrics.Webhook{Status: 503, StoreError: true, Throttled: true}),
		},
		"StreamFunction": {rec.StreamOpened(), rec.StreamEnded(metrics.StreamEnd{Reason: "planned end", Duration: time.Second, Delivered: 1, Holes: 1})},
	}
	out := map[string]emittedMetric{}
	for fn, lines := range events {
		for _, attrs := range lines {
			var b strings.Builder
			slog.New(slog.NewJSONHandler(&b, nil)).LogAttrs(t.Context(), slog.LevelInfo, "event", attrs...)
			var doc struct {
				AWS struct {
					CloudWatchMetrics []struct {
						Namespace  string
						Dimensions [][]string
						Metrics    []struct{ Name string }
					}
				} `json:"_aws"`
			}
			if err := json.Unmarshal([]byte(b.String()), &doc); err != nil {
				t.Fatalf("EMF line %s: %v", b.String(), err)
			}
			for _, d := range doc.AWS.CloudWatchMetrics {
				for _, m := range d.Metrics {
					if d.Namespace != metrics.Namespace || len(d.Dimensions) != 1 {
						t.Fatalf("EMF directive %+v: want namespace %s, one dimension set", d, metrics.Namespace)
					}
					out[m.Name] = emittedMetric{fn, d.Dimensions[0]}
				}
			}
		}
	}
	if len(out) < 10 {
		t.Fatalf("relay metrics %v: fewer than the issue's ten", out)
	}
	return out
}

// deployment is the transformed template with parameter values: what
// CloudFormation would create.
type deployment struct {
	cfn map[string]any
	e   *evaluator
	res map[string]any // the resources whose condition holds
}

var transforms sync.Map // parameters as JSON -> *transformResult

type transformResult struct {
	once sync.Once
	cfn  map[string]any
	err  error
}

// samTransform runs infra/sam-transform.py once per set of parameters.
func samTransform(t *testing.T, params map[string]string) map[string]any {
	t.Helper()
	testutil.LookPath(t, "python3", "-c", "import samtranslator")
	key, _ := json.Marshal(params)
	v, _ := transforms.LoadOrStore(string(key), new(transformResult))
	r := v.(*transformResult)
	r.once.Do(func() {
		cmd := exec.Command("python3", "sam-transform.py", templatePath, string(key))
		// No AWS account, no network: a region for the ARNs it builds, and
		// nothing else to look for.
		cmd.Env = append(os.Environ(), "AWS_DEFAULT_REGION=us-east-1", "AWS_REGION=us-east-1",
			"AWS_EC2_METADATA_DISABLED=true", "AWS_ACCESS_KEY_ID=dummy", "AWS_SECRET_ACCESS_KEY=dummy",
			"AWS_CONFIG_FILE="+os.DevNull, "AWS_SHARED_CREDENTIALS_FILE="+os.DevNull)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			r.err = fmt.Errorf("sam-transform.py %s: %v\n%s", key, err, stderr.String())
			return
		}
		r.err = json.Unmarshal(out, &r.cfn)
	})
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.cfn
}

func deploy(t *testing.T, params map[string]string) deployment {
	t.Helper()
	cfn := samTransform(t, params)
	d := deployment{cfn: cfn, e: newEvaluator(t, cfn, params), res: map[string]any{}}
	for id, r := range mapAt(t, cfn, "Resources") {
		if c, ok := get(r, "Condition").(string); ok {
			holds, err := d.e.condition(c)
			if err != nil {
				t.Fatalf("%s: condition %s: %v", id, c, err)
			}
			if !holds {
				continue
			}
		}
		d.res[id] = r
	}
	return d
}

// ofType returns the IDs of the resources of type typ, sorted.
func (d deployment) ofType(typ string) []string {
	var ids []string
	for id, r := range d.res {
		if get(r, "Type") == typ {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// one returns the only resource of type typ.
func (d deployment) one(t *testing.T, typ string) (string, map[string]any) {
	t.Helper()
	ids := d.ofType(typ)
	if len(ids) != 1 {
		t.Fatalf("resources of type %s: %v, want exactly one", typ, ids)
	}
	return ids[0], d.props(t, ids[0])
}

// props returns a resource's properties with intrinsic functions resolved.
func (d deployment) props(t *testing.T, id string) map[string]any {
	t.Helper()
	v, err := d.e.eval(get(d.res[id], "Properties"))
	if err != nil {
		t.Fatalf("%s: %v", id, err)
	}
	m, _ := v.(map[string]any)
	return m
}

// placeholders are the resources a resolved value refers to: <Ref:X>, <X.Attr>.
var placeholder = regexp.MustCompile(`<(?:Ref:)?([A-Za-z0-9]+)(?:\.[A-Za-z0-9.]+)?>`)

// refersOnlyToCreated fails the test when v refers to a resource that the
// deployment does not create (CloudFormation would refuse the template).
func (d deployment) refersOnlyToCreated(t *testing.T, what string, v any) {
	t.Helper()
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // keep <Ref:X> as it is
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	for _, m := range placeholder.FindAllStringSubmatch(b.String(), -1) {
		if _, ok := d.res[m[1]]; !ok {
			t.Errorf("%s refers to %s, which this deployment does not create", what, m[0])
		}
	}
}

// integration is an x-amazon-apigateway-integration of an OpenAPI body.
type integration struct {
	Type                 string `json:"type"`
	HTTPMethod           string `json:"httpMethod"`
	URI                  string `json:"uri"`
	PayloadFormatVersion string `json:"payloadFormatVersion"`
	ResponseTransferMode string `json:"responseTransferMode"`
	TimeoutInMillis      int    `json:"timeoutInMillis"`
}

// routes are an OpenAPI body's integrations by path and method.
func routes(t *testing.T, body any) map[string]map[string]integration {
	t.Helper()
	var doc struct {
		Paths map[string]map[string]struct {
			Integration *integration `json:"x-amazon-apigateway-integration"`
		} `json:"paths"`
	}
	b, _ := json.Marshal(body)
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("OpenAPI body: %v", err)
	}
	out := map[string]map[string]integration{}
	for p, methods := range doc.Paths {
		for m, op := range methods {
			if op.Integration == nil {
				t.Errorf("%s %s has no integration", m, p)
				continue
			}
			if out[p] == nil {
				out[p] = map[string]integration{}
			}
			out[p][m] = *op.Integration
		}
	}
	return out
}

const anyMethod = "x-amazon-apigateway-any-method"

// invocationURI is the integration URI of a buffered (2015-03-31) or a
// streamed (2021-11-15) Lambda invocation of fn, as evaluated here.
func invocationURI(fn string, streamed bool) string {
	if streamed {
		return "arn:aws:apigateway:us-east-1:lambda:path/2021-11-15/functions/<" + fn + ".Arn>/response-streaming-invocations"
	}
	return "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/<" + fn + ".Arn>/invocations"
}

// functionTimeout is a function's Timeout, in seconds.
func (d deployment) functionTimeout(t *testing.T, fn string) int {
	t.Helper()
	s, _ := scalar(d.props(t, fn)["Timeout"])
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%s Timeout %q", fn, s)
	}
	return n
}

// arnGlob reports whether the Lambda permission SourceArn pattern (with *
// wildcards) matches arn.
func arnGlob(pattern, arn string) bool {
	re := "^" + strings.ReplaceAll(regexp.QuoteMeta(pattern), `\*`, ".*") + "$"
	return regexp.MustCompile(re).MatchString(arn)
}

// permitted reports whether some permission lets principal invoke fn for
// the execute-api ARN arn.
func (d deployment) permitted(t *testing.T, fn, arn string) bool {
	t.Helper()
	for _, id := range d.ofType("AWS::Lambda::Permission") {
		p := d.props(t, id)
		src, _ := p["SourceArn"].(string)
		if p["FunctionName"] == "<Ref:"+fn+">" && p["Action"] == "lambda:InvokeFunction" &&
			p["Principal"] == "apigateway.amazonaws.com" && arnGlob(src, arn) {
			return true
		}
	}
	return false
}

// TestTransform checks the CloudFormation the template becomes, for both
// shapes: the fronts and their integrations (the streaming URI and transfer
// mode, the timeouts), least-privilege roles, no wildcard resources, log
// retention, the alarms and the dashboard, and the outputs.
func TestTransform(t *testing.T) {
	for _, shape := range shapes {
		t.Run(shape, func(t *testing.T) {
			d := deploy(t, map[string]string{"StreamEndpoint": shape})
			t.Run("Front", func(t *testing.T) {
				if shape == restAPIShape {
					checkRestAPI(t, d)
				} else {
					checkFunctionURL(t, d)
				}
			})
			t.Run("References", func(t *testing.T) {
				// CloudFormation refuses a reference to a resource it does not create.
				for _, id := range slices.Sorted(maps.Keys(d.res)) {
					d.refersOnlyToCreated(t, id, d.props(t, id))
				}
			})
			t.Run("Roles", func(t *testing.T) { checkRoles(t, d) })
			t.Run("NoWildcards", func(t *testing.T) { checkNoWildcards(t, d) })
			t.Run("LogRetention", func(t *testing.T) { checkLogRetention(t, d) })
			t.Run("Alarms", func(t *testing.T) { checkAlarms(t, d, shape) })
			t.Run("Dashboard", func(t *testing.T) { checkDashboard(t, d, shape) })
			t.Run("Outputs", func(t *testing.T) { checkOutputs(t, d, shape) })
		})
	}
	// The roles do not depend on the front.
	a, b := deploy(t, map[string]string{"StreamEndpoint": shapes[0]}), deploy(t, map[string]string{"StreamEndpoint": shapes[1]})
	for _, role := range a.ofType("AWS::IAM::Role") {
		if !reflect.DeepEqual(a.res[role], b.res[role]) {
			t.Errorf("role %s differs between the shapes", role)
		}
	}
}

func checkRestAPI(t *testing.T, d deployment) {
	for _, typ := range []string{"AWS::ApiGatewayV2::Api", "AWS::Lambda::Url"} {
		if ids := d.ofType(typ); len(ids) > 0 {
			t.Errorf("a second origin: %s %v", typ, ids)
		}
	}
	api, p := d.one(t, "AWS::ApiGateway::RestApi")
	if types := get(p, "EndpointConfiguration", "Types"); !reflect.DeepEqual(types, []any{"REGIONAL"}) {
		t.Errorf("EndpointConfiguration %v, want REGIONAL (edge-optimized closes idle streams after 30 s)", types)
	}
	if bt := get(p, "Body", "x-amazon-apigateway-binary-media-types"); !reflect.DeepEqual(bt, []any{"*/*"}) {
		t.Errorf("binary media types %v, want */* (gzip bodies reach the function as sent)", bt)
	}
	// A regional REST API closes a stream idle for 5 minutes: every allowed
	// heartbeat comes well before.
	maxBeat, _ := scalar(get(d.cfn, "Parameters", "HeartbeatSeconds", "MaxValue"))
	if hb := time.Duration(atoi(maxBeat)) * time.Second; hb >= lambdaemu.RESTIdleTimeout*9/10 {
		t.Errorf("HeartbeatSeconds may be %v, too close to the REST idle timeout %v", hb, lambdaemu.RESTIdleTimeout)
	}

	webhookTimeout, streamTimeout := d.functionTimeout(t, "WebhookFunction"), d.functionTimeout(t, "StreamFunction")
	want := map[string]string{
		"/": "WebhookFunction", "/{proxy+}": "WebhookFunction",
		ingest.Path: "WebhookFunction", ingest.TokenPath: "WebhookFunction",
		stream.Path: "StreamFunction", stream.Path + "/{proxy+}": "StreamFunction",
	}
	got := routes(t, p["Body"])
	if len(got) != len(want) {
		t.Errorf("paths %v, want %v", mapsKeys(got), mapsKeys(want))
	}
	_, stage := d.one(t, "AWS::ApiGateway::Stage")
	stageName, _ := stage["StageName"].(string)
	for path, fn := range want {
		in, ok := got[path][anyMethod]
		if !ok || len(got[path]) != 1 {
			t.Errorf("%s: methods %v, want ANY only", path, mapsKeys(got[path]))
			continue
		}
		streamed := fn == "StreamFunction"
		if in.Type != "aws_proxy" || in.HTTPMethod != "POST" || in.URI != invocationURI(fn, streamed) {
			t.Errorf("%s: integration %+v, want a Lambda proxy integration with %s", path, in, invocationURI(fn, streamed))
		}
		if streamed {
			if in.ResponseTransferMode != "STREAM" || in.TimeoutInMillis < streamTimeout*1000 || in.TimeoutInMillis > 900000 {
				t.Errorf("%s: transfer mode %q, timeout %d ms; want STREAM, from the function's %d s up to 900000",
					path, in.ResponseTransferMode, in.TimeoutInMillis, streamTimeout)
			}
		} else if (in.ResponseTransferMode != "" && in.ResponseTransferMode != "BUFFERED") ||
			in.TimeoutInMillis <= webhookTimeout*1000 || in.TimeoutInMillis > 29000 {
			t.Errorf("%s: transfer mode %q, timeout %d ms; want buffered, above the function's %d s, at most 29000",
				path, in.ResponseTransferMode, in.TimeoutInMillis, webhookTimeout)
		}
		// API Gateway may invoke the function for this route.
		concrete := strings.ReplaceAll(path, "{proxy+}", "close")
		arn := "arn:aws:execute-api:us-east-1:123456789012:<Ref:" + api + ">/" + stageName + "/GET" + concrete
		if !d.permitted(t, fn, arn) {
			t.Errorf("%s: no permission lets API Gateway invoke %s for %s", path, fn, arn)
		}
	}
	// Stage throttling from the parameters.
	settings := get(d.res[d.ofType("AWS::ApiGateway::Stage")[0]], "Properties", "MethodSettings")
	if !mentions(settings, "ApiThrottlingRateLimit") || !mentions(settings, "ApiThrottlingBurstLimit") {
		t.Errorf("stage MethodSettings %v, want throttling from the parameters", settings)
	}
}

func mapsKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

func checkFunctionURL(t *testing.T, d deployment) {
	for _, typ := range []string{"AWS::ApiGateway::RestApi", "AWS::ApiGateway::Stage", "AWS::ApiGateway::Deployment"} {
		if ids := d.ofType(typ); len(ids) > 0 {
			t.Errorf("a REST API in the FunctionUrl shape: %s %v", typ, ids)
		}
	}
	api, p := d.one(t, "AWS::ApiGatewayV2::Api")
	got := routes(t, p["Body"])
	webhookTimeout := d.functionTimeout(t, "WebhookFunction")
	if webhookTimeout > 29 {
		t.Errorf("WebhookFunction Timeout %d s, above API Gateway's 30 s", webhookTimeout)
	}
	for _, path := range []string{ingest.Path, ingest.TokenPath} {
		in, ok := got[path][anyMethod]
		if !ok || len(got[path]) != 1 || in.Type != "aws_proxy" || in.URI != invocationURI("WebhookFunction", false) || in.PayloadFormatVersion != "2.0" {
			t.Errorf("%s: %+v, want ANY to WebhookFunction, payload 2.0", path, got[path])
		}
		if arn := "arn:aws:execute-api:us-east-1:123456789012:<Ref:" + api + ">/$default/POST" + path; !d.permitted(t, "WebhookFunction", arn) {
			t.Errorf("no permission lets the HTTP API invoke WebhookFunction for %s", arn)
		}
	}
	if len(got) != 2 {
		t.Errorf("HTTP API paths %v, want %s and %s only", mapsKeys(got), ingest.Path, ingest.TokenPath)
	}
	_, stage := d.one(t, "AWS::ApiGatewayV2::Stage")
	if !mentions(get(d.res[d.ofType("AWS::ApiGatewayV2::Stage")[0]], "Properties", "DefaultRouteSettings"), "ApiThrottlingRateLimit") || stage["StageName"] != "$default" {
		t.Errorf("HTTP API stage %v, want $default with throttling from the parameters", stage)
	}

	_, url := d.one(t, "AWS::Lambda::Url")
	if url["TargetFunctionArn"] != "<Ref:StreamFunction>" || url["InvokeMode"] != "RESPONSE_STREAM" || url["AuthType"] != "NONE" {
		t.Errorf("function URL %v, want StreamFunction's, RESPONSE_STREAM, AuthType NONE", url)
	}
	var urlPerm, invokePerm bool
	for _, id := range d.ofType("AWS::Lambda::Permission") {
		p := d.props(t, id)
		if p["FunctionName"] != "<Ref:StreamFunction>" || p["Principal"] != "*" {
			continue
		}
		urlPerm = urlPerm || (p["Action"] == "lambda:InvokeFunctionUrl" && p["FunctionUrlAuthType"] == "NONE")
		invokePerm = invokePerm || (p["Action"] == "lambda:InvokeFunction" && p["InvokedViaFunctionUrl"] == true)
	}
	if !urlPerm || !invokePerm {
		t.Errorf("function URL permissions: InvokeFunctionUrl %v, InvokeFunction via the URL %v; want both", urlPerm, invokePerm)
	}
}

// checkRoles: each function's role may do exactly what its store calls
// need, on the table only, and log (the basic execution role).
func checkRoles(t *testing.T, d deployment) {
	var table string
	for _, id := range d.ofType("AWS::DynamoDB::Table") {
		table = id
	}
	if len(d.ofType("AWS::Lambda::Function")) != len(functions) {
		t.Errorf("functions %v, want %d", d.ofType("AWS::Lambda::Function"), len(functions))
	}
	for _, f := range functions {
		want, err := dynamostore.IAMActions(f.storeMethods...)
		if err != nil {
			t.Fatal(err)
		}
		role, _ := get(d.res[f.logicalID], "Properties", "Role", "Fn::GetAtt").([]any)
		if len(role) != 2 || d.res[fmt.Sprint(role[0])] == nil {
			t.Fatalf("%s: Role %v, want !GetAtt of a role of the stack", f.logicalID, role)
		}
		roleID := fmt.Sprint(role[0])
		p := d.props(t, roleID)
		if !reflect.DeepEqual(p["ManagedPolicyArns"], []any{basicExecutionRole}) {
			t.Errorf("%s: managed policies %v, want the basic execution role only", roleID, p["ManagedPolicyArns"])
		}
		trust, _ := json.Marshal(p["AssumeRolePolicyDocument"])
		if !strings.Contains(string(trust), `"lambda.amazonaws.com"`) || strings.Count(string(trust), `"Service"`) != 1 {
			t.Errorf("%s: trust policy %s, want Lambda alone", roleID, trust)
		}
		var got []string
		policies, _ := p["Policies"].([]any)
		for _, pol := range policies {
			stmts, _ := get(pol, "PolicyDocument", "Statement").([]any)
			for _, s := range stmts {
				if r := get(s, "Resource"); r != "<"+table+".Arn>" {
					t.Errorf("%s: statement %v: Resource %v, want the table's ARN only", roleID, get(s, "Sid"), r)
				}
				switch a := get(s, "Action").(type) {
				case string:
					got = append(got, a)
				case []any:
					for _, x := range a {
						got = append(got, fmt.Sprint(x))
					}
				}
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s (%s): actions %v, want exactly %v", roleID, f.logicalID, got, want)
		}
	}
}

// checkNoWildcards: no IAM statement of the deployment allows an action or a
// resource by wildcard.
func checkNoWildcards(t *testing.T, d deployment) {
	found := 0
	for id, r := range d.res {
		walkStatements(get(r, "Properties"), func(s map[string]any) {
			found++
			if get(s, "Effect") != "Allow" {
				return
			}
			for _, key := range []string{"Action", "Resource", "NotAction", "NotResource"} {
				b, _ := json.Marshal(s[key])
				if strings.Contains(string(b), "*") {
					t.Errorf("%s: %s %s has a wildcard", id, key, b)
				}
			}
		})
	}
	if found == 0 {
		t.Error("no IAM statement found: the walk is broken")
	}
}

// walkStatements calls fn for every IAM policy statement under v (any
// mapping with Effect and Action), skipping trust policies.
func walkStatements(v any, fn func(map[string]any)) {
	switch x := v.(type) {
	case map[string]any:
		if _, ok := x["AssumeRolePolicyDocument"]; ok {
			x = mapsWithout(x, "AssumeRolePolicyDocument")
		}
		if x["Effect"] != nil && (x["Action"] != nil || x["NotAction"] != nil) {
			fn(x)
			return
		}
		for _, it := range x {
			walkStatements(it, fn)
		}
	case []any:
		for _, it := range x {
			walkStatements(it, fn)
		}
	}
}

func mapsWithout(m map[string]any, key string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if k != key {
			out[k] = v
		}
	}
	return out
}

func checkLogRetention(t *testing.T, d deployment) {
	groups := map[string]bool{}
	for _, id := range d.ofType("AWS::Logs::LogGroup") {
		r := d.res[id]
		if get(r, "Properties", "RetentionInDays", "Ref") != "LogRetentionDays" {
			t.Errorf("%s: RetentionInDays %v, want !Ref LogRetentionDays", id, get(r, "Properties", "RetentionInDays"))
		}
		if name, ok := get(r, "Properties", "LogGroupName", "Fn::Sub").(string); ok {
			groups[name] = true
		}
	}
	for _, fn := range d.ofType("AWS::Lambda::Function") {
		if !groups["/aws/lambda/${"+fn+"}"] {
			t.Errorf("%s has no log group of its own with retention (Lambda would make one that keeps logs forever)", fn)
		}
	}
}

// alarmMetric is one metric of an alarm, single-metric or metric math.
type alarmMetric struct {
	Namespace, Name string
	Dims            map[string]string
}

func alarmMetrics(p map[string]any) ([]alarmMetric, string) {
	dims := func(v any) map[string]string {
		out := map[string]string{}
		ds, _ := v.([]any)
		for _, d := range ds {
			n, _ := get(d, "Name").(string)
			out[n], _ = scalar(get(d, "Value"))
		}
		return out
	}
	if p["MetricName"] != nil {
		ns, _ := p["Namespace"].(string)
		n, _ := p["MetricName"].(string)
		return []alarmMetric{{ns, n, dims(p["Dimensions"])}}, ""
	}
	var out []alarmMetric
	var expr []string
	ms, _ := p["Metrics"].([]any)
	for _, m := range ms {
		if e, ok := get(m, "Expression").(string); ok {
			expr = append(expr, e)
			continue
		}
		met := get(m, "MetricStat", "Metric")
		ns, _ := get(met, "Namespace").(string)
		n, _ := get(met, "MetricName").(string)
		out = append(out, alarmMetric{ns, n, dims(get(met, "Dimensions"))})
	}
	return out, strings.Join(expr, "; ")
}

// dynamoOperations are the DynamoDB operations the functions call: the
// actions of their roles, and TransactWriteItems (authorised as PutItem).
func dynamoOperations(t *testing.T) []string {
	ops := []string{"TransactWriteItems"}
	for _, f := range functions {
		actions, err := dynamostore.IAMActions(f.storeMethods...)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range actions {
			ops = append(ops, strings.TrimPrefix(a, "dynamodb:"))
		}
	}
	slices.Sort(ops)
	return slices.Compact(ops)
}

// checkAlarms: the four alarms, each on the metrics it is about and
// notifying the topic; the concurrency one only with a reservation; the
// e-mail subscription only with an address.
func checkAlarms(t *testing.T, d deployment, shape string) {
	check := func(t *testing.T, d deployment, wantConcurrency bool) {
		topic, _ := d.one(t, "AWS::SNS::Topic")
		found := map[string]bool{}
		for _, id := range d.ofType("AWS::CloudWatch::Alarm") {
			p := d.props(t, id)
			if acts, _ := p["AlarmActions"].([]any); !slices.Contains(acts, any("<Ref:"+topic+">")) {
				t.Errorf("%s: AlarmActions %v, want the topic", id, p["AlarmActions"])
			}
			ms, expr := alarmMetrics(p)
			d.refersOnlyToCreated(t, id, p)
			var ops []string
			for _, m := range ms {
				switch {
				case m.Namespace == "AWS/ApiGateway" && (m.Name == "5XXError" || m.Name == "5xx"):
					found["webhook 5xx"] = true
					if shape == restAPIShape {
						_, api := d.one(t, "AWS::ApiGateway::RestApi")
						_, stage := d.one(t, "AWS::ApiGateway::Stage")
						if m.Name != "5XXError" || m.Dims["ApiName"] != api["Name"] || m.Dims["Stage"] != stage["StageName"] {
							t.Errorf("%s: %+v, want 5XXError of the REST API %v, stage %v", id, m, api["Name"], stage["StageName"])
						}
					} else if m.Name != "5xx" || m.Dims["ApiId"] != "<Ref:WebhookApi>" || m.Dims["Stage"] != "$default" {
						t.Errorf("%s: %+v, want 5xx of the HTTP API's $default stage", id, m)
					}
					if !slices.ContainsFunc(ms, func(o alarmMetric) bool { return o.Name == "Count" && reflect.DeepEqual(o.Dims, m.Dims) }) || !strings.Contains(expr, "/") {
						t.Errorf("%s: a rate needs the request Count of the same API: %+v, %q", id, ms, expr)
					}
				case m.Namespace == "AWS/DynamoDB" && m.Name == "ThrottledRequests":
					found["table throttles"] = true
					ops = append(ops, m.Dims["Operation"])
					if m.Dims["TableName"] != "<Ref:MessagesTable>" {
						t.Errorf("%s: %+v, want the table", id, m)
					}
				case m.Namespace == "AWS/Lambda" && m.Name == "ConcurrentExecutions":
					found["stream concurrency"] = true
					reservation, _ := scalar(d.e.params["StreamReservedConcurrency"])
					if m.Dims["FunctionName"] != "<Ref:StreamFunction>" || !strings.Contains(expr, "/ "+reservation) {
						t.Errorf("%s: %+v %q, want StreamFunction's concurrency against its reservation %s", id, m, expr, reservation)
					}
					if th, _ := scalar(p["Threshold"]); atoi(th) >= 100 {
						t.Errorf("%s: threshold %s%%: the alarm must come before the reservation is full", id, th)
					}
				case m.Namespace == "AWS/Lambda" && m.Name == "Errors" && m.Dims["FunctionName"] == "<Ref:StreamFunction>":
					found["stream errors"] = true
				}
			}
			if slices.Sort(ops); len(ops) > 0 && !slices.Equal(ops, dynamoOperations(t)) {
				t.Errorf("%s: operations %v, want every one the functions call: %v", id, ops, dynamoOperations(t))
			}
		}
		for _, want := range []string{"webhook 5xx", "table throttles", "stream errors"} {
			if !found[want] {
				t.Errorf("no alarm on %s", want)
			}
		}
		if found["stream concurrency"] != wantConcurrency {
			t.Errorf("alarm on the stream concurrency: %v, want %v", found["stream concurrency"], wantConcurrency)
		}
	}
	check(t, d, true)
	t.Run("NoReservation", func(t *testing.T) {
		check(t, deploy(t, map[string]string{"StreamEndpoint": shape, "StreamReservedConcurrency": "0"}), false)
	})
	t.Run("Email", func(t *testing.T) {
		if subs := d.ofType("AWS::SNS::Subscription"); len(subs) != 0 {
			t.Errorf("subscriptions %v without AlarmEmail", subs)
		}
		withEmail := deploy(t, map[string]string{"StreamEndpoint": shape, "AlarmEmail": "ops@example.com"})
		topic, _ := withEmail.one(t, "AWS::SNS::Topic")
		_, sub := withEmail.one(t, "AWS::SNS::Subscription")
		if sub["Protocol"] != "email" || sub["Endpoint"] != "ops@example.com" || sub["TopicArn"] != "<Ref:"+topic+">" {
			t.Errorf("subscription %v, want ops@example.com by e-mail to the topic", sub)
		}
	})
}

// checkDashboard: one dashboard whose body is valid JSON in this shape,
// shows every alarm, the shape's API, and the relay's own metrics.
func checkDashboard(t *testing.T, d deployment, shape string) {
	id, p := d.one(t, "AWS::CloudWatch::Dashboard")
	d.refersOnlyToCreated(t, id, p)
	raw, _ := p["DashboardBody"].(string)
	var body struct {
		Widgets []struct {
			Type       string         `json:"type"`
			Properties map[string]any `json:"properties"`
		} `json:"widgets"`
	}
	if err := json.Unmarshal([]byte(raw), &body); err != nil {
		t.Fatalf("DashboardBody is not JSON: %v\n%s", err, raw)
	}
	var alarms []any
	for _, w := range body.Widgets {
		if w.Type == "alarm" {
			alarms = append(alarms, w.Properties["alarms"].([]any)...)
		}
	}
	for _, a := range d.ofType("AWS::CloudWatch::Alarm") {
		if !slices.Contains(alarms, any("<"+a+".Arn>")) {
			t.Errorf("the dashboard does not show alarm %s", a)
		}
	}
	api := `"ApiId", "<Ref:WebhookApi>"`
	if shape == restAPIShape {
		_, rest := d.one(t, "AWS::ApiGateway::RestApi")
		api = fmt.Sprintf(`"ApiName", "%s"`, rest["Name"])
	}
	if !strings.Contains(raw, api) {
		t.Errorf("the dashboard does not show the API (%s)", api)
	}
	// Each of the relay's metrics, found by its exact dimension set and this
	// stack's function.
	for name, m := range relayMetrics(t) {
		search := fmt.Sprintf(`SEARCH('{%s,%s} MetricName=\"%s\" Function=\"<Ref:%s>\"'`,
			metrics.Namespace, strings.Join(m.dimensions, ","), name, m.function)
		if !strings.Contains(raw, search) {
			t.Errorf("the dashboard does not show %s as written (want %s)", name, search)
		}
	}
}

func checkOutputs(t *testing.T, d deployment, shape string) {
	got := map[string]string{}
	for name, o := range mapAt(t, d.cfn, "Outputs") {
		if c, ok := get(o, "Condition").(string); ok {
			if holds, err := d.e.condition(c); err != nil || !holds {
				continue
			}
		}
		if s, _ := get(o, "Description").(string); s == "" {
			t.Errorf("output %s has no description", name)
		}
		v, err := d.e.str(get(o, "Value"))
		if err != nil {
			t.Errorf("output %s: %v", name, err)
			continue
		}
		d.refersOnlyToCreated(t, "output "+name, v)
		got[name] = v
	}
	common := map[string]string{
		"TableName":     "<Ref:MessagesTable>",
		"AlarmTopicArn": "<Ref:AlarmTopic>",
		"DashboardUrl":  "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#dashboards:name=<Ref:Dashboard>",
	}
	var want map[string]string
	if shape == restAPIShape {
		_, stage := d.one(t, "AWS::ApiGateway::Stage")
		api, _ := d.one(t, "AWS::ApiGateway::RestApi")
		// The page resolves its endpoints against its own URL: the stage's,
		// with the trailing slash.
		base := fmt.Sprintf("https://<Ref:%s>.execute-api.us-east-1.amazonaws.com/%s/", api, stage["StageName"])
		want = map[string]string{
			"ChatUrl":    base,
			"WebhookUrl": base + strings.TrimPrefix(ingest.Path, "/"),
			"HealthUrl":  base + strings.TrimPrefix(ingest.Path, "/"),
			"StreamUrl":  base + strings.TrimPrefix(stream.Path, "/"),
		}
	} else {
		api := "https://<Ref:WebhookApi>.execute-api.us-east-1.amazonaws.com" + ingest.Path
		want = map[string]string{
			"WebhookUrl": api,
			"HealthUrl":  api,
			// A function URL ends with a slash.
			"StreamUrl":    "<StreamFunctionUrl.FunctionUrl>" + strings.TrimPrefix(stream.Path, "/"),
			"ChatPageHint": "http://localhost:3000/?stream=<StreamFunctionUrl.FunctionUrl>" + strings.TrimPrefix(stream.Path, "/") + "&api=" + api,
		}
	}
	for k, v := range common {
		want[k] = v
	}
	if !reflect.DeepEqual(got, want) {
		for k := range want {
			if got[k] != want[k] {
				t.Errorf("output %s = %q, want %q", k, got[k], want[k])
			}
		}
		for k := range got {
			if _, ok := want[k]; !ok {
				t.Errorf("unexpected output %s = %q in this shape", k, got[k])
			}
		}
	}
}

// TestLintPerShape runs cfn-lint on the template with StreamEndpoint pinned
// to each value in turn (its only allowed value), so that each shape is
// linted on its own, on top of make lint-template's run over all of them.
func TestLintPerShape(t *testing.T) {
	lint := testutil.LookPath(t, "cfn-lint", "--version")
	for _, shape := range shapes {
		t.Run(shape, func(t *testing.T) {
			tmpl := loadTemplate(t)
			p := mapAt(t, tmpl, "Parameters", "StreamEndpoint")
			p["Default"], p["AllowedValues"] = shape, []any{shape}
			b, err := json.MarshalIndent(tmpl, "", " ")
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "template-"+shape+".json")
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(lint, path).CombinedOutput(); err != nil {
				t.Errorf("cfn-lint with StreamEndpoint=%s: %v\n%s", shape, err, out)
			}
		})
	}
}
