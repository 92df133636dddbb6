// Package deploy_test checks the deployment artifacts in this directory as
// they are written: the Kubernetes manifests decode strictly into the
// official API types and fit together (selectors, ports, probes, mounts,
// security context, grace period against the drain timeout), the ConfigMap's
// pgcloak.yaml loads with pgcloak's own strict loader, the alert rules and
// the Grafana dashboard's queries parse as PromQL and name only metrics
// pgcloak exports (and the dashboard shows every one), the Prometheus rule
// file and the PrometheusRule carry the same groups, and docker-compose.yml
// loads with the Compose loader with every bind-mounted file present.
package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	composetypes "github.com/compose-spec/compose-go/v2/types"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/prometheus/promql/parser"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"

	"github.com/pgcloak/pgcloak/internal/metrics"
	"github.com/pgcloak/pgcloak/policy"
)

const (
	kubeDir        = "kubernetes"
	alertsFile     = "prometheus/pgcloak-alerts.yaml"
	dashboardFile  = "grafana/pgcloak-dashboard.json"
	composeFile    = "../docker-compose.yml"
	composeDir     = "compose"
	configKey      = "pgcloak.yaml"
	defaultDrain   = 30 * time.Second // server.drain_timeout when unset
	healthPath     = "/healthz"
	readyPath      = "/readyz"
	metricsPort    = "metrics"
	postgresPort   = "postgres"
	imageUID       = 10001 // the Dockerfile's pgcloak user
	runbookPointer = "README.md#operating-pgcloak"
)

// ---------------------------------------------------------------------------
// Kubernetes manifests

// manifests is every object in deploy/kubernetes, decoded strictly into its
// API type.
type manifests struct {
	files          map[string][]string // file → kinds in it
	deployment     *appsv1.Deployment
	service        *corev1.Service
	configMap      *corev1.ConfigMap
	secret         *corev1.Secret
	serviceAccount *corev1.ServiceAccount
	pdb            *policyv1.PodDisruptionBudget
	hpa            *autoscalingv2.HorizontalPodAutoscaler
	serviceMonitor *monitoringv1.ServiceMonitor
	prometheusRule *monitoringv1.PrometheusRule
}

// newObject returns a pointer to the Go type of apiVersion/kind, and where
// to keep it.
func (m *manifests) newObject(apiVersion, kind string) (any, error) {
	switch apiVersion + " " + kind {
	case "apps/v1 Deployment":
		m.deployment = &appsv1.Deployment{}
		return m.deployment, nil
	case "v1 Service":
		m.service = &corev1.Service{}
		return m.service, nil
	case "v1 ConfigMap":
		m.configMap = &corev1.ConfigMap{}
		return m.configMap, nil
	case "v1 Secret":
		m.secret = &corev1.Secret{}
		return m.secret, nil
	case "v1 ServiceAccount":
		m.serviceAccount = &corev1.ServiceAccount{}
		return m.serviceAccount, nil
	case "policy/v1 PodDisruptionBudget":
		m.pdb = &policyv1.PodDisruptionBudget{}
		return m.pdb, nil
	case "autoscaling/v2 HorizontalPodAutoscaler":
		m.hpa = &autoscalingv2.HorizontalPodAutoscaler{}
		return m.hpa, nil
	case "monitoring.coreos.com/v1 ServiceMonitor":
		m.serviceMonitor = &monitoringv1.ServiceMonitor{}
		return m.serviceMonitor, nil
	case "monitoring.coreos.com/v1 PrometheusRule":
		m.prometheusRule = &monitoringv1.PrometheusRule{}
		return m.prometheusRule, nil
	}
	return nil, fmt.Errorf("no known API type for apiVersion %q kind %q", apiVersion, kind)
}

var docSeparator = regexp.MustCompile(`(?m)^---\s*$`)

// loadManifests decodes every manifest (every .yaml in deploy/kubernetes but
// kustomization.yaml) with sigs.k8s.io/yaml's UnmarshalStrict into the
// official Go types: an unknown or misspelt field, a duplicate key or a
// value of the wrong type fails.
func loadManifests(t *testing.T) *manifests {
	t.Helper()
	m := &manifests{files: map[string][]string{}}
	paths, err := filepath.Glob(filepath.Join(kubeDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, path := range paths {
		if filepath.Base(path) == "kustomization.yaml" {
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		base := filepath.Base(path)
		m.files[base] = nil
		for i, doc := range docSeparator.Split(string(data), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct {
					Name      string `json:"name"`
					Namespace string `json:"namespace"`
				} `json:"metadata"`
			}
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				t.Errorf("%s, document %d: %v", path, i+1, err)
				continue
			}
			key := head.Kind + "/" + head.Metadata.Name
			if prev, dup := seen[key]; dup {
				t.Errorf("%s: %s is also defined in %s", path, key, prev)
			}
			seen[key] = path
			obj, err := m.newObject(head.APIVersion, head.Kind)
			if err != nil {
				t.Errorf("%s, document %d: %v", path, i+1, err)
				continue
			}
			if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				t.Errorf("%s: %s does not decode strictly as %T: %v", path, key, obj, err)
			}
			if head.Metadata.Name == "" {
				t.Errorf("%s: %s has no metadata.name", path, head.Kind)
			}
			if head.Metadata.Namespace != "" {
				t.Errorf("%s: %s sets metadata.namespace %q; the manifests are namespace-less (kustomization.yaml sets it)", path, key, head.Metadata.Namespace)
			}
			m.files[base] = append(m.files[base], head.Kind)
		}
	}
	for what, present := range map[string]bool{
		"Deployment": m.deployment != nil, "Service": m.service != nil, "ConfigMap": m.configMap != nil,
		"Secret": m.secret != nil, "ServiceAccount": m.serviceAccount != nil, "PodDisruptionBudget": m.pdb != nil,
		"HorizontalPodAutoscaler": m.hpa != nil, "ServiceMonitor": m.serviceMonitor != nil, "PrometheusRule": m.prometheusRule != nil,
	} {
		if !present {
			t.Errorf("no %s among the manifests in %s", what, kubeDir)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return m
}

func stripComments(doc string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// container is the Deployment's pgcloak container.
func (m *manifests) container(t *testing.T) *corev1.Container {
	t.Helper()
	cs := m.deployment.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("the Deployment has %d containers, want 1 (pgcloak)", len(cs))
	}
	return &cs[0]
}

// config is the ConfigMap's pgcloak.yaml, as pgcloak's loader reads it.
func (m *manifests) config(t *testing.T) (*policy.Config, []byte) {
	t.Helper()
	data, ok := m.configMap.Data[configKey]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %s", m.configMap.Name, configKey)
	}
	cfg, err := policy.Load([]byte(data))
	if err != nil {
		t.Fatalf("ConfigMap %s, %s: pgcloak's loader rejects it: %v", m.configMap.Name, configKey, err)
	}
	return cfg, []byte(data)
}

func TestKubernetesManifestsDecodeStrictlyIntoTheOfficialAPITypes(t *testing.T) {
	m := loadManifests(t)
	for file, kinds := range m.files {
		if len(kinds) == 0 {
			t.Errorf("%s holds no object", file)
		}
	}
}

// kustomization is the part of kustomize's Kustomization the directory
// uses, decoded strictly: a field kustomize does not know or this test does
// not expect fails.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
}

func TestKustomizationListsEveryManifestAndNothingElse(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(kubeDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("kustomization.yaml: apiVersion %q kind %q, want kustomize.config.k8s.io/v1beta1 Kustomization", k.APIVersion, k.Kind)
	}
	if k.Namespace == "" {
		t.Errorf("kustomization.yaml sets no namespace")
	}
	m := loadManifests(t)
	listed := map[string]bool{}
	for _, r := range k.Resources {
		if listed[r] {
			t.Errorf("kustomization.yaml lists %s twice", r)
		}
		listed[r] = true
		if _, ok := m.files[r]; !ok {
			t.Errorf("kustomization.yaml lists %s, which is not a manifest in %s", r, kubeDir)
		}
	}
	for file := range m.files {
		if !listed[file] {
			t.Errorf("%s is not listed in kustomization.yaml's resources", file)
		}
	}
	image := m.container(t).Image
	found := false
	for _, img := range k.Images {
		found = found || img.Name == image
	}
	if !found {
		t.Errorf("kustomization.yaml's images do not set the container's image %q", image)
	}
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestSelectorsMatchThePodsAndNamesResolve(t *testing.T) {
	m := loadManifests(t)
	d := m.deployment
	pod := d.Spec.Template.Labels
	if d.Spec.Selector == nil || len(d.Spec.Selector.MatchExpressions) > 0 || !selects(d.Spec.Selector.MatchLabels, pod) {
		t.Errorf("Deployment %s: selector %v does not match its pod template's labels %v", d.Name, d.Spec.Selector, pod)
	}
	if !selects(m.service.Spec.Selector, pod) {
		t.Errorf("Service %s: selector %v does not match the pod labels %v", m.service.Name, m.service.Spec.Selector, pod)
	}
	if s := m.pdb.Spec.Selector; s == nil || len(s.MatchExpressions) > 0 || !selects(s.MatchLabels, pod) {
		t.Errorf("PodDisruptionBudget %s: selector %v does not match the pod labels %v", m.pdb.Name, s, pod)
	}
	for _, c := range d.Spec.Template.Spec.TopologySpreadConstraints {
		if c.LabelSelector == nil || !selects(c.LabelSelector.MatchLabels, pod) {
			t.Errorf("topologySpreadConstraint on %s: selector does not match the pod labels %v", c.TopologyKey, pod)
		}
	}
	// A ServiceMonitor selects Services, whose endpoints are the pods.
	if s := m.serviceMonitor.Spec.Selector; len(s.MatchExpressions) > 0 || !selects(s.MatchLabels, m.service.Labels) {
		t.Errorf("ServiceMonitor %s: selector %v does not match Service %s's labels %v", m.serviceMonitor.Name, s.MatchLabels, m.service.Name, m.service.Labels)
	}
	servicePorts := map[string]corev1.ServicePort{}
	for _, p := range m.service.Spec.Ports {
		servicePorts[p.Name] = p
	}
	if len(m.serviceMonitor.Spec.Endpoints) == 0 {
		t.Errorf("ServiceMonitor %s has no endpoints", m.serviceMonitor.Name)
	}
	for _, e := range m.serviceMonitor.Spec.Endpoints {
		if sp, ok := servicePorts[e.Port]; !ok {
			t.Errorf("ServiceMonitor %s: endpoint port %q is not a port name of Service %s", m.serviceMonitor.Name, e.Port, m.service.Name)
		} else if sp.TargetPort.String() != metricsPort {
			t.Errorf("ServiceMonitor %s: endpoint port %s does not lead to the container's %q port", m.serviceMonitor.Name, e.Port, metricsPort)
		}
		if e.Path != "/metrics" {
			t.Errorf("ServiceMonitor %s: endpoint path %q, want /metrics", m.serviceMonitor.Name, e.Path)
		}
	}
	c := m.container(t)
	containerPorts := map[string]int32{}
	for _, p := range c.Ports {
		containerPorts[p.Name] = p.ContainerPort
	}
	for _, p := range m.service.Spec.Ports {
		if p.TargetPort.Type == 0 && p.TargetPort.IntVal != 0 {
			t.Errorf("Service %s: port %s targets a number (%d); name the container port instead", m.service.Name, p.Name, p.TargetPort.IntVal)
		} else if _, ok := containerPorts[p.TargetPort.StrVal]; !ok {
			t.Errorf("Service %s: port %s targets %q, not a container port", m.service.Name, p.Name, p.TargetPort.StrVal)
		}
	}
	if p, ok := servicePorts[postgresPort]; !ok || p.Port != 5432 || p.TargetPort.String() != postgresPort {
		t.Errorf("Service %s: want port %q 5432 → container port %q, have %+v", m.service.Name, postgresPort, postgresPort, p)
	}
	if m.service.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("Service %s: type %q, want ClusterIP", m.service.Name, m.service.Spec.Type)
	}
	ref := m.hpa.Spec.ScaleTargetRef
	if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != d.Name {
		t.Errorf("HorizontalPodAutoscaler %s scales %+v, not Deployment %s", m.hpa.Name, ref, d.Name)
	}
	spec := d.Spec.Template.Spec
	if spec.ServiceAccountName != m.serviceAccount.Name {
		t.Errorf("Deployment runs as service account %q; the manifests define %q", spec.ServiceAccountName, m.serviceAccount.Name)
	}
	for _, v := range spec.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name != m.configMap.Name {
			t.Errorf("volume %s mounts ConfigMap %q; the manifests define %q", v.Name, v.ConfigMap.Name, m.configMap.Name)
		}
		if v.Secret != nil && v.Secret.SecretName != m.secret.Name {
			t.Errorf("volume %s mounts Secret %q; the manifests define %q", v.Name, v.Secret.SecretName, m.secret.Name)
		}
	}
}

func TestDeploymentShapeForZeroDowntime(t *testing.T) {
	m := loadManifests(t)
	d := m.deployment
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 3 {
		t.Errorf("Deployment replicas %v, want at least 3", d.Spec.Replicas)
	}
	ru := d.Spec.Strategy.RollingUpdate
	if d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || ru == nil ||
		ru.MaxUnavailable == nil || ru.MaxUnavailable.String() != "0" || ru.MaxSurge == nil || ru.MaxSurge.String() != "1" {
		t.Errorf("Deployment strategy %+v, want RollingUpdate with maxUnavailable 0, maxSurge 1", d.Spec.Strategy)
	}
	keys := map[string]bool{}
	for _, c := range d.Spec.Template.Spec.TopologySpreadConstraints {
		keys[c.TopologyKey] = true
	}
	for _, k := range []string{"kubernetes.io/hostname", "topology.kubernetes.io/zone"} {
		if !keys[k] {
			t.Errorf("no topologySpreadConstraint on %s", k)
		}
	}
	pdb := m.pdb.Spec
	switch {
	case pdb.MaxUnavailable != nil && pdb.MinAvailable != nil:
		t.Errorf("PodDisruptionBudget sets both minAvailable and maxUnavailable")
	case pdb.MaxUnavailable != nil && pdb.MaxUnavailable.String() != "1":
		t.Errorf("PodDisruptionBudget maxUnavailable %s, want 1", pdb.MaxUnavailable)
	case pdb.MaxUnavailable == nil && pdb.MinAvailable == nil:
		t.Errorf("PodDisruptionBudget sets neither minAvailable nor maxUnavailable")
	}
	h := m.hpa.Spec
	if h.MinReplicas == nil || *h.MinReplicas < 3 || h.MaxReplicas <= *h.MinReplicas {
		t.Errorf("HorizontalPodAutoscaler min %v max %d, want min ≥ 3 < max", h.MinReplicas, h.MaxReplicas)
	}
	cpu := false
	for _, ms := range h.Metrics {
		cpu = cpu || (ms.Resource != nil && ms.Resource.Name == corev1.ResourceCPU && ms.Resource.Target.AverageUtilization != nil)
	}
	if !cpu {
		t.Errorf("HorizontalPodAutoscaler does not scale on CPU utilization")
	}
}

func TestProbesHitHealthEndpointsOnADeclaredPort(t *testing.T) {
	m := loadManifests(t)
	c := m.container(t)
	ports := map[string]bool{}
	for _, p := range c.Ports {
		ports[p.Name] = true
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{
		{"startupProbe", c.StartupProbe, healthPath},
		{"livenessProbe", c.LivenessProbe, healthPath},
		{"readinessProbe", c.ReadinessProbe, readyPath},
	} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("container %s: %s is not an httpGet probe", c.Name, p.name)
			continue
		}
		g := p.probe.HTTPGet
		if g.Path != p.path {
			t.Errorf("container %s: %s hits %q, want %q", c.Name, p.name, g.Path, p.path)
		}
		if g.Port.StrVal == "" || !ports[g.Port.StrVal] {
			t.Errorf("container %s: %s port %q is not a declared container port name", c.Name, p.name, g.Port.String())
		}
		if g.Port.StrVal != metricsPort {
			t.Errorf("container %s: %s on port %q, want %q (server.metrics_listen)", c.Name, p.name, g.Port.String(), metricsPort)
		}
	}
}

func TestPodRunsAsTheImageUserLockedDown(t *testing.T) {
	m := loadManifests(t)
	spec := m.deployment.Spec.Template.Spec
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("pod spec: automountServiceAccountToken is not false")
	}
	if a := m.serviceAccount.AutomountServiceAccountToken; a == nil || *a {
		t.Errorf("ServiceAccount %s: automountServiceAccountToken is not false", m.serviceAccount.Name)
	}
	psc := spec.SecurityContext
	if psc == nil {
		t.Fatalf("pod spec has no securityContext")
	}
	c := m.container(t)
	sc := c.SecurityContext
	if sc == nil {
		t.Fatalf("container %s has no securityContext", c.Name)
	}
	// A container setting overrides the pod's; either may carry it.
	pick := func(container, pod any) any {
		if !reflect.ValueOf(container).IsNil() {
			return container
		}
		return pod
	}
	if v, _ := pick(sc.RunAsNonRoot, psc.RunAsNonRoot).(*bool); v == nil || !*v {
		t.Errorf("runAsNonRoot is not true")
	}
	if v, _ := pick(sc.RunAsUser, psc.RunAsUser).(*int64); v == nil {
		t.Errorf("runAsUser is unset, want %d (the image's user)", imageUID)
	} else if *v != imageUID {
		t.Errorf("runAsUser is %d, want %d (the image's user)", *v, imageUID)
	}
	if v, _ := pick(sc.SeccompProfile, psc.SeccompProfile).(*corev1.SeccompProfile); v == nil || v.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("seccompProfile is %v, want RuntimeDefault", v)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("container %s: readOnlyRootFilesystem is not true", c.Name)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("container %s: allowPrivilegeEscalation is not false", c.Name)
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Errorf("container %s is privileged", c.Name)
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
		t.Errorf("container %s: capabilities %+v, want drop [ALL] and nothing added", c.Name, sc.Capabilities)
	}
}

func TestContainerHasResourceRequestsAndLimits(t *testing.T) {
	m := loadManifests(t)
	c := m.container(t)
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := c.Resources.Requests[r]
		lim, hasLim := c.Resources.Limits[r]
		if !hasReq || req.IsZero() {
			t.Errorf("container %s: no %s request", c.Name, r)
		}
		if !hasLim || lim.IsZero() {
			t.Errorf("container %s: no %s limit", c.Name, r)
		}
		if hasReq && hasLim && lim.Cmp(req) < 0 {
			t.Errorf("container %s: %s limit %s is below its request %s", c.Name, r, lim.String(), req.String())
		}
	}
}

// drainTimeout is server.drain_timeout from the ConfigMap's pgcloak.yaml,
// or its default.
func drainTimeout(t *testing.T, data []byte) time.Duration {
	t.Helper()
	var raw struct {
		Server map[string]any `json:"server"`
	}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	v, ok := raw.Server["drain_timeout"]
	if !ok {
		return defaultDrain
	}
	d, err := time.ParseDuration(fmt.Sprint(v))
	if err != nil {
		t.Fatalf("server.drain_timeout %v: %v", v, err)
	}
	return d
}

// preStopSeconds is how long the container's preStop hook sleeps.
func preStopSeconds(t *testing.T, c *corev1.Container) int64 {
	t.Helper()
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
		t.Fatalf("container %s has no preStop hook (the endpoint must leave the Service before the listener closes)", c.Name)
	}
	h := c.Lifecycle.PreStop
	switch {
	case h.Sleep != nil:
		return h.Sleep.Seconds
	case h.Exec != nil && len(h.Exec.Command) == 2 && h.Exec.Command[0] == "sleep":
		n, err := strconv.ParseInt(h.Exec.Command[1], 10, 64)
		if err != nil {
			t.Fatalf("preStop %v: %v", h.Exec.Command, err)
		}
		return n
	}
	t.Fatalf("container %s: preStop is neither a sleep handler nor exec [sleep N]", c.Name)
	return 0
}

func TestGracePeriodOutlastsPreStopAndDrainTimeout(t *testing.T) {
	m := loadManifests(t)
	_, data := m.config(t)
	drain := drainTimeout(t, data)
	c := m.container(t)
	pre := time.Duration(preStopSeconds(t, c)) * time.Second
	if pre <= 0 {
		t.Errorf("preStop sleeps %v", pre)
	}
	g := m.deployment.Spec.Template.Spec.TerminationGracePeriodSeconds
	if g == nil {
		t.Fatalf("terminationGracePeriodSeconds is unset (Kubernetes' 30s default is not above drain_timeout %v + preStop %v)", drain, pre)
	}
	if grace := time.Duration(*g) * time.Second; grace <= drain+pre {
		t.Errorf("terminationGracePeriodSeconds %v does not exceed preStop %v + server.drain_timeout %v: sessions would be killed mid-drain", grace, pre, drain)
	}
}

func TestConfigMapLoadsWithPgcloaksStrictLoaderAndMatchesThePod(t *testing.T) {
	m := loadManifests(t)
	cfg, _ := m.config(t)
	c := m.container(t)
	spec := m.deployment.Spec.Template.Spec

	// Listeners: bound on all interfaces, on the ports the pod declares.
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for _, l := range []struct{ field, addr, port string }{
		{"server.listen", cfg.Server.Listen, postgresPort},
		{"server.metrics_listen", cfg.Server.MetricsListen, metricsPort},
	} {
		host, port, err := net.SplitHostPort(l.addr)
		if err != nil {
			t.Errorf("%s %q: %v", l.field, l.addr, err)
			continue
		}
		if host != "0.0.0.0" && host != "" && host != "::" {
			t.Errorf("%s %q binds %s, unreachable from the kubelet and the Service", l.field, l.addr, host)
		}
		if want := ports[l.port]; strconv.Itoa(int(want)) != port {
			t.Errorf("%s port %s, but container port %q is %d", l.field, port, l.port, want)
		}
	}

	// The config file: mounted as a directory (a subPath mount never
	// updates, so --watch-config would never see an edit) at --config.
	mounts := map[string]corev1.VolumeMount{}
	for _, vm := range c.VolumeMounts {
		mounts[vm.Name] = vm
	}
	volumeOf := func(pred func(corev1.Volume) bool) (corev1.Volume, corev1.VolumeMount, bool) {
		for _, v := range spec.Volumes {
			if pred(v) {
				vm, ok := mounts[v.Name]
				return v, vm, ok
			}
		}
		return corev1.Volume{}, corev1.VolumeMount{}, false
	}
	_, cm, ok := volumeOf(func(v corev1.Volume) bool { return v.ConfigMap != nil })
	if !ok {
		t.Fatalf("the ConfigMap is not mounted in container %s", c.Name)
	}
	if cm.SubPath != "" || cm.SubPathExpr != "" {
		t.Errorf("the ConfigMap is mounted with subPath, which the kubelet never updates")
	}
	args := strings.Join(append(slices.Clone(c.Command), c.Args...), " ")
	if want := "--config " + filepath.Join(cm.MountPath, configKey); !strings.Contains(args, want) {
		t.Errorf("container args %q do not contain %q", args, want)
	}
	if !strings.Contains(args, "--watch-config") {
		t.Errorf("container args %q lack --watch-config (ConfigMap edits would not be picked up)", args)
	}

	// The AppRole credentials: files in the mounted Secret, which has
	// those keys.
	v := cfg.Keystore.Vault
	if cfg.Keystore.Provider != "vault" || v.Auth != "approle" {
		t.Fatalf("keystore is %s/%s, want vault with auth approle", cfg.Keystore.Provider, v.Auth)
	}
	sv, sm, ok := volumeOf(func(v corev1.Volume) bool { return v.Secret != nil })
	if !ok {
		t.Fatalf("the AppRole Secret is not mounted in container %s", c.Name)
	}
	keys := map[string]bool{}
	for k := range m.secret.StringData {
		keys[k] = true
	}
	for k := range m.secret.Data {
		keys[k] = true
	}
	for _, f := range []struct{ field, path string }{
		{"role_id_file", v.AppRole.RoleIDFile},
		{"secret_id_file", v.AppRole.SecretIDFile},
	} {
		dir, name := filepath.Split(f.path)
		switch {
		case f.path == "":
			t.Errorf("keystore.vault.approle.%s is empty: the credentials come from the mounted Secret", f.field)
		case filepath.Clean(dir) != filepath.Clean(sm.MountPath):
			t.Errorf("keystore.vault.approle.%s %q is not in the Secret's mount %s", f.field, f.path, sm.MountPath)
		case !keys[name]:
			t.Errorf("keystore.vault.approle.%s %q: Secret %s has no key %q", f.field, f.path, m.secret.Name, name)
		}
	}
	if mode := sv.Secret.DefaultMode; mode != nil && *mode&0o004 != 0 {
		t.Errorf("the AppRole Secret's files are world-readable (defaultMode %o)", *mode)
	}
}

// ---------------------------------------------------------------------------
// Alert rules

// ruleFile is Prometheus's rule-file format, decoded strictly.
type ruleFile struct {
	Groups []ruleGroup `json:"groups"`
}

type ruleGroup struct {
	Name     string `json:"name"`
	Interval string `json:"interval,omitempty"`
	Rules    []rule `json:"rules"`
}

type rule struct {
	Alert         string            `json:"alert,omitempty"`
	Record        string            `json:"record,omitempty"`
	Expr          string            `json:"expr"`
	For           string            `json:"for,omitempty"`
	KeepFiringFor string            `json:"keep_firing_for,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

func loadAlerts(t *testing.T) ruleFile {
	t.Helper()
	data, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	return f
}

func TestAlertRuleFileAndPrometheusRuleCarryTheSameGroups(t *testing.T) {
	m := loadManifests(t)
	file := loadAlerts(t)
	// Compare as documents: both are JSON through sigs.k8s.io/yaml.
	want, err := json.Marshal(file.Groups)
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.Marshal(m.prometheusRule.Spec.Groups)
	if err != nil {
		t.Fatal(err)
	}
	var a, b any
	if err := json.Unmarshal(want, &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(got, &b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Errorf("%s and the PrometheusRule's spec.groups differ:\nrule file:      %s\nPrometheusRule: %s", alertsFile, want, got)
	}
}

// promTemplateFuncs stands in for the functions Prometheus offers alert
// templates, so that annotations can be parsed (not run) here.
var promTemplateFuncs = template.FuncMap{}

// promTemplateDefs is what Prometheus puts before every alert template.
const promTemplateDefs = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"

func init() {
	for _, name := range []string{
		"humanize", "humanize1024", "humanizeDuration", "humanizePercentage", "humanizeTimestamp",
		"first", "label", "value", "query", "strvalue", "args", "reReplaceAll", "safeHtml",
		"match", "title", "toUpper", "toLower", "graphLink", "tableLink", "sortByLabel",
		"stripPort", "stripDomain", "externalURL", "pathPrefix", "toTime", "toDuration", "parseDuration", "now",
	} {
		promTemplateFuncs[name] = func(...any) any { return nil }
	}
}

func TestAlertRulesAreCompleteAndWellFormed(t *testing.T) {
	f := loadAlerts(t)
	if len(f.Groups) == 0 {
		t.Fatalf("%s has no groups", alertsFile)
	}
	names := map[string]bool{}
	for _, g := range f.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q: no name or no rules", g.Name)
		}
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: a rule without an alert name (expr %q)", g.Name, r.Expr)
				continue
			}
			if names[r.Alert] {
				t.Errorf("alert %s is defined twice", r.Alert)
			}
			names[r.Alert] = true
			if _, err := parser.NewParser(parser.Options{}).ParseExpr(r.Expr); err != nil {
				t.Errorf("alert %s: expr does not parse: %v", r.Alert, err)
			}
			for field, d := range map[string]string{"for": r.For, "keep_firing_for": r.KeepFiringFor} {
				if d != "" {
					if _, err := parseDuration(d); err != nil {
						t.Errorf("alert %s: %s %q: %v", r.Alert, field, d, err)
					}
				}
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" && s != "info" {
				t.Errorf("alert %s: severity label %q, want critical, warning or info", r.Alert, s)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("alert %s: no %s annotation", r.Alert, a)
				}
			}
			if r.Annotations["runbook_url"] != runbookPointer {
				t.Errorf("alert %s: runbook_url %q, want %q", r.Alert, r.Annotations["runbook_url"], runbookPointer)
			}
			for a, text := range r.Annotations {
				if _, err := template.New(a).Funcs(promTemplateFuncs).Option("missingkey=zero").Parse(promTemplateDefs + text); err != nil {
					t.Errorf("alert %s: annotation %s is not a valid template: %v", r.Alert, a, err)
				}
			}
		}
	}
	// The conditions the alerts must cover, by the metric they watch.
	watched := map[string]bool{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			for _, n := range exprMetrics(t, r.Expr) {
				watched[n] = true
			}
		}
	}
	for _, metric := range []string{
		"up", "pgcloak_keystore_up", "pgcloak_keystore_calls_total", "pgcloak_statements_refused_total",
		"pgcloak_audit_dropped_total", "pgcloak_audit_write_errors_total", "pgcloak_upstream_connect_errors_total",
		"pgcloak_policy_reloads_total", "pgcloak_result_errors_total",
	} {
		if !watched[metric] {
			t.Errorf("no alert watches %s", metric)
		}
	}
}

// parseDuration reads a Prometheus duration (1m, 2h30m, 1d, 1w).
func parseDuration(s string) (time.Duration, error) {
	re := regexp.MustCompile(`^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$`)
	sub := re.FindStringSubmatch(s)
	if s == "" || sub == nil {
		return 0, fmt.Errorf("not a Prometheus duration")
	}
	units := []time.Duration{365 * 24 * time.Hour, 7 * 24 * time.Hour, 24 * time.Hour, time.Hour, time.Minute, time.Second, time.Millisecond}
	var d time.Duration
	for i, u := range units {
		if sub[i+1] != "" {
			n, _ := strconv.Atoi(sub[i+1])
			d += time.Duration(n) * u
		}
	}
	return d, nil
}

// ---------------------------------------------------------------------------
// PromQL and metric names

// grafanaVars are Grafana's interval variables, which are not PromQL.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "${__rate_interval}", "5m",
	"$__interval", "1m", "${__interval}", "1m", "$__range", "1h", "${__range}", "1h")

// exprMetrics parses one PromQL expression and returns the metric names it
// selects, failing the test when it does not parse or selects by anything
// but a literal name.
func exprMetrics(t *testing.T, expr string) []string {
	t.Helper()
	e, err := parser.NewParser(parser.Options{}).ParseExpr(grafanaVars.Replace(expr))
	if err != nil {
		t.Errorf("PromQL does not parse: %v\n%s", err, expr)
		return nil
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			if vs.Name == "" {
				t.Errorf("selector %s has no literal metric name", vs)
			}
			names = append(names, vs.Name)
		}
		return nil
	})
	return names
}

// exported maps every name a query may use for an exported metric
// (histograms' _bucket, _sum and _count series too) to the metric's name.
func exported() map[string]string {
	out := map[string]string{}
	for _, n := range metrics.Names() {
		out[n] = n
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			out[n+s] = n
		}
	}
	return out
}

// isHistogram says whether an exported metric is a histogram, which a query
// must use through _bucket, _sum or _count: internal/metrics names its
// histograms, and only them, *_seconds.
func isHistogram(name string) bool { return strings.HasSuffix(name, "_seconds") }

func checkMetricName(t *testing.T, where, name string, ex map[string]string) {
	t.Helper()
	switch base, ok := ex[name]; {
	case name == "up":
	case !strings.HasPrefix(name, metrics.Namespace+"_"):
		t.Errorf("%s: metric %s is not pgcloak's (nor up)", where, name)
	case !ok:
		t.Errorf("%s: metric %s is not exported by pgcloak (internal/metrics.Names)", where, name)
	case base == name && isHistogram(name):
		t.Errorf("%s: histogram %s used without _bucket, _sum or _count", where, name)
	}
}

func TestAlertRulesUseOnlyExportedMetrics(t *testing.T) {
	ex := exported()
	for _, g := range loadAlerts(t).Groups {
		for _, r := range g.Rules {
			for _, n := range exprMetrics(t, r.Expr) {
				checkMetricName(t, "alert "+r.Alert, n, ex)
			}
		}
	}
}

// ---------------------------------------------------------------------------
// Grafana dashboard

type dashboard struct {
	SchemaVersion int     `json:"schemaVersion"`
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource *datasourceRef           `json:"datasource"`
	GridPos    struct{ H, W, X, Y int } `json:"gridPos"`
	Targets    []struct {
		RefID      string         `json:"refId"`
		Expr       string         `json:"expr"`
		Datasource *datasourceRef `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// allPanels flattens rows.
func (d dashboard) allPanels() []panel {
	var out []panel
	for _, p := range d.Panels {
		out = append(out, p)
		out = append(out, p.Panels...)
	}
	return out
}

func TestDashboardPanelsHaveADatasourceAndQueries(t *testing.T) {
	d := loadDashboard(t)
	if d.SchemaVersion < 36 || d.UID == "" || d.Title == "" {
		t.Errorf("dashboard: schemaVersion %d uid %q title %q", d.SchemaVersion, d.UID, d.Title)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	validDS := func(ds *datasourceRef) bool {
		if ds == nil || ds.Type != "prometheus" {
			return false
		}
		if name, ok := strings.CutPrefix(ds.UID, "$"); ok {
			return vars[strings.Trim(name, "{}")] == "datasource"
		}
		return ds.UID == "prometheus"
	}
	ids := map[int]bool{}
	queries := 0
	for _, p := range d.allPanels() {
		if ids[p.ID] {
			t.Errorf("panel id %d is used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Title == "" {
			t.Errorf("panel %d has no title", p.ID)
		}
		if !validDS(p.Datasource) {
			t.Errorf("panel %q: datasource %+v is not Prometheus by ${DS_PROMETHEUS} or uid prometheus", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no targets", p.Title)
		}
		for _, tg := range p.Targets {
			queries++
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q target %s has no expr", p.Title, tg.RefID)
			}
			if tg.Datasource != nil && !validDS(tg.Datasource) {
				t.Errorf("panel %q target %s: datasource %+v", p.Title, tg.RefID, tg.Datasource)
			}
		}
	}
	if queries == 0 {
		t.Errorf("the dashboard has no queries")
	}
}

func TestDashboardQueriesParseAndShowEveryExportedMetric(t *testing.T) {
	d := loadDashboard(t)
	ex := exported()
	shown := map[string]bool{}
	for _, p := range d.allPanels() {
		for _, tg := range p.Targets {
			for _, n := range exprMetrics(t, tg.Expr) {
				checkMetricName(t, fmt.Sprintf("panel %q", p.Title), n, ex)
				shown[ex[n]] = true
			}
		}
	}
	for _, n := range metrics.Names() {
		if !shown[n] {
			t.Errorf("the dashboard shows no panel of %s", n)
		}
	}
}

// ---------------------------------------------------------------------------
// docker-compose.yml and what it mounts

func loadCompose(t *testing.T) *composetypes.Project {
	t.Helper()
	ctx := context.Background()
	abs, err := filepath.Abs(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	details, err := loader.LoadConfigFiles(ctx, []string{abs}, filepath.Dir(abs))
	if err != nil {
		t.Fatal(err)
	}
	details.Environment = composetypes.Mapping{}
	p, err := loader.LoadWithContext(ctx, *details, func(o *loader.Options) {
		o.SetProjectName("pgcloak", true)
		o.ResolvePaths = true
	})
	if err != nil {
		t.Fatalf("%s does not load with the Compose loader: %v", composeFile, err)
	}
	return p
}

// bindSource is where a service mounts target from, or "".
func bindSource(p *composetypes.Project, service, target string) string {
	s, ok := p.Services[service]
	if !ok {
		return ""
	}
	for _, v := range s.Volumes {
		if v.Type == composetypes.VolumeTypeBind && v.Target == target {
			return v.Source
		}
	}
	return ""
}

func TestComposeFileLoadsAndMountsFilesThatExist(t *testing.T) {
	p := loadCompose(t)
	for _, name := range []string{"pgcloak", "prometheus", "grafana"} {
		if _, ok := p.Services[name]; !ok {
			t.Errorf("%s has no service %s", composeFile, name)
		}
	}
	for name, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type != composetypes.VolumeTypeBind {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("service %s mounts %s, which does not exist: %v", name, v.Source, err)
			}
		}
	}
	for _, port := range p.Services["grafana"].Ports {
		if port.HostIP != "127.0.0.1" {
			t.Errorf("grafana publishes port %s on %q, want 127.0.0.1 only", port.Published, port.HostIP)
		}
	}

	// With a Docker engine at hand, Docker's own reading of the file too.
	if _, err := exec.LookPath("docker"); err != nil {
		t.Logf("docker compose config: skipped, no docker CLI")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := exec.CommandContext(ctx, "docker", "info").Run(); err != nil {
		t.Logf("docker compose config: skipped, no reachable Docker engine (%v)", err)
		return
	}
	cmd := exec.CommandContext(ctx, "docker", "compose", "-f", composeFile, "config", "-q")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("docker compose config -q: %v\n%s", err, out)
	}
}

type promConfig struct {
	Global struct {
		ScrapeInterval     string `json:"scrape_interval"`
		EvaluationInterval string `json:"evaluation_interval"`
	} `json:"global"`
	RuleFiles     []string `json:"rule_files"`
	ScrapeConfigs []struct {
		JobName       string `json:"job_name"`
		MetricsPath   string `json:"metrics_path,omitempty"`
		StaticConfigs []struct {
			Targets []string `json:"targets"`
		} `json:"static_configs"`
	} `json:"scrape_configs"`
}

type grafanaDatasources struct {
	APIVersion  int `json:"apiVersion"`
	Datasources []struct {
		Name      string `json:"name"`
		UID       string `json:"uid"`
		Type      string `json:"type"`
		Access    string `json:"access"`
		URL       string `json:"url"`
		IsDefault bool   `json:"isDefault"`
		Editable  bool   `json:"editable"`
	} `json:"datasources"`
}

type grafanaDashboards struct {
	APIVersion int `json:"apiVersion"`
	Providers  []struct {
		Name              string `json:"name"`
		Folder            string `json:"folder"`
		Type              string `json:"type"`
		DisableDeletion   bool   `json:"disableDeletion"`
		AllowUIUpdates    bool   `json:"allowUiUpdates"`
		UpdateIntervalSec int    `json:"updateIntervalSeconds,omitempty"`
		Options           struct {
			Path string `json:"path"`
		} `json:"options"`
	} `json:"providers"`
}

func readStrict(t *testing.T, path string, into any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestComposeMonitoringIsWiredToPgcloakTheRulesAndTheDashboard(t *testing.T) {
	p := loadCompose(t)

	// Prometheus scrapes pgcloak on its metrics_listen port and loads the
	// alert rule file where compose mounts it.
	promFile := bindSource(p, "prometheus", "/etc/prometheus/prometheus.yml")
	if promFile == "" {
		t.Fatalf("the prometheus service does not mount its config at /etc/prometheus/prometheus.yml")
	}
	var pc promConfig
	readStrict(t, promFile, &pc)
	alertsAbs, _ := filepath.Abs(alertsFile)
	for _, rf := range pc.RuleFiles {
		if src := bindSource(p, "prometheus", rf); src != alertsAbs {
			t.Errorf("prometheus rule file %s is mounted from %q, want %s", rf, src, alertsAbs)
		}
	}
	if len(pc.RuleFiles) == 0 {
		t.Errorf("%s loads no rule files", promFile)
	}
	data, err := os.ReadFile(filepath.Join(composeDir, "pgcloak.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := policy.Load(data)
	if err != nil {
		t.Fatalf("compose/pgcloak.yaml: %v", err)
	}
	_, port, err := net.SplitHostPort(cfg.Server.MetricsListen)
	if err != nil {
		t.Fatalf("compose/pgcloak.yaml server.metrics_listen %q: %v", cfg.Server.MetricsListen, err)
	}
	want := "pgcloak:" + port
	found := false
	for _, sc := range pc.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			if slices.Contains(st.Targets, want) {
				found = true
				if sc.JobName != "pgcloak" {
					t.Errorf("the scrape job for %s is %q; the alert rules expect job=\"pgcloak\"", want, sc.JobName)
				}
			}
		}
	}
	if !found {
		t.Errorf("%s does not scrape %s (server.metrics_listen in compose/pgcloak.yaml)", promFile, want)
	}

	// Grafana: a Prometheus data source, and a dashboard provider whose
	// folder holds the dashboard file.
	dsDir := bindSource(p, "grafana", "/etc/grafana/provisioning/datasources")
	dbDir := bindSource(p, "grafana", "/etc/grafana/provisioning/dashboards")
	if dsDir == "" || dbDir == "" {
		t.Fatalf("grafana does not mount provisioning/datasources and provisioning/dashboards")
	}
	for _, dir := range []string{dsDir, dbDir} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
		if len(files) == 0 {
			t.Errorf("%s holds no provisioning file", dir)
		}
	}
	dsFiles, _ := filepath.Glob(filepath.Join(dsDir, "*.yaml"))
	for _, f := range dsFiles {
		var ds grafanaDatasources
		readStrict(t, f, &ds)
		ok := false
		for _, d := range ds.Datasources {
			ok = ok || (d.Type == "prometheus" && d.UID == "prometheus" && d.URL == "http://prometheus:9090")
		}
		if !ok {
			t.Errorf("%s: no Prometheus data source with uid prometheus at http://prometheus:9090", f)
		}
	}
	dashAbs, _ := filepath.Abs(dashboardFile)
	dbFiles, _ := filepath.Glob(filepath.Join(dbDir, "*.yaml"))
	for _, f := range dbFiles {
		var db grafanaDashboards
		readStrict(t, f, &db)
		for _, pr := range db.Providers {
			if pr.Type != "file" {
				t.Errorf("%s: provider %s has type %q", f, pr.Name, pr.Type)
				continue
			}
			if src := bindSource(p, "grafana", filepath.Join(pr.Options.Path, filepath.Base(dashboardFile))); src != dashAbs {
				t.Errorf("%s: provider %s reads %s, where grafana mounts %q, not %s", f, pr.Name, pr.Options.Path, src, dashAbs)
			}
		}
	}
}
