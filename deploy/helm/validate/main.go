// Command validate checks rendered Kubernetes manifests offline against the Kubernetes API's own
// Go types: every document of the YAML on standard input is decoded strictly into the type its
// apiVersion and kind name (an unknown or misspelled field, a wrong type, a bad quantity or a
// duplicate key is an error, naming the document), and a kind it does not know is an error too.
// The Prometheus Operator's ServiceMonitor, a custom resource, is checked against the fields of
// its spec the chart uses. Exit status 1 on the first problem.
//
//	helm template deploy/helm/gridwatch | go run ./deploy/helm/validate
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// serviceMonitor is the part of monitoring.coreos.com/v1 ServiceMonitor the chart writes.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path"`
			Interval string `json:"interval"`
		} `json:"endpoints"`
	} `json:"spec"`
}

func target(apiVersion, kind string) (any, bool) {
	switch apiVersion + "/" + kind {
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, true
	case "v1/Service":
		return &corev1.Service{}, true
	case "v1/PersistentVolumeClaim":
		return &corev1.PersistentVolumeClaim{}, true
	case "v1/Secret":
		return &corev1.Secret{}, true
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}, true
	case "apps/v1/StatefulSet":
		return &appsv1.StatefulSet{}, true
	case "batch/v1/Job":
		return &batchv1.Job{}, true
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, true
	case "autoscaling/v2/HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, true
	case "monitoring.coreos.com/v1/ServiceMonitor":
		return &serviceMonitor{}, true
	}
	return nil, false
}

// documents splits a multi-document YAML stream at its `---` lines, keeping each document's
// source (the `# Source:` comment helm writes) for the messages.
func documents(r io.Reader) ([][]byte, error) {
	var docs [][]byte
	var cur bytes.Buffer
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimRight(line, " ") == "---" {
			docs = append(docs, append([]byte(nil), cur.Bytes()...))
			cur.Reset()
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
	}
	docs = append(docs, cur.Bytes())
	return docs, sc.Err()
}

func source(doc []byte) string {
	for _, l := range strings.Split(string(doc), "\n") {
		if s, ok := strings.CutPrefix(l, "# Source: "); ok {
			return s
		}
	}
	return "(no # Source line)"
}

func main() {
	docs, err := documents(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "validate: reading the manifests:", err)
		os.Exit(1)
	}
	checked := 0
	for _, doc := range docs {
		var head metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &head); err != nil {
			fmt.Fprintf(os.Stderr, "validate: %s: not YAML: %v\n", source(doc), err)
			os.Exit(1)
		}
		if head.Kind == "" && head.APIVersion == "" {
			continue // an empty document (a template that rendered nothing)
		}
		obj, ok := target(head.APIVersion, head.Kind)
		if !ok {
			fmt.Fprintf(os.Stderr, "validate: %s: %s %s is not a kind this check knows\n", source(doc), head.APIVersion, head.Kind)
			os.Exit(1)
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			fmt.Fprintf(os.Stderr, "validate: %s (%s): %v\n", source(doc), head.Kind, err)
			os.Exit(1)
		}
		checked++
	}
	if checked == 0 {
		fmt.Fprintln(os.Stderr, "validate: no manifest on standard input")
		os.Exit(1)
	}
	fmt.Printf("validate: %d manifests match the Kubernetes API's types\n", checked)
}
