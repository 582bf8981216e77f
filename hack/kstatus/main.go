// kstatus judges Kubernetes objects the way Flux, Argo CD's kstatus mode and kpt do: it reads a
// stream of YAML or JSON objects on stdin and prints, for each, one JSON line with the status
// computed by sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute (Current, InProgress, Failed...).
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Kind    string `json:"kind"`
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	decoder := utilyaml.NewYAMLOrJSONDecoder(os.Stdin, 4096)
	out := json.NewEncoder(os.Stdout)
	for {
		var raw json.RawMessage
		if err := decoder.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return
			}
			fmt.Fprintf(os.Stderr, "kstatus: decode: %v\n", err)
			os.Exit(2)
		}
		if len(raw) == 0 || string(raw) == "null" {
			continue // an empty YAML document
		}
		// UnmarshalJSON keeps integers int64, which kstatus's accessors require.
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(raw); err != nil {
			fmt.Fprintf(os.Stderr, "kstatus: decode object: %v\n", err)
			os.Exit(2)
		}
		result, err := status.Compute(u)
		if err != nil {
			fmt.Fprintf(os.Stderr, "kstatus: compute %s/%s: %v\n", u.GetKind(), u.GetName(), err)
			os.Exit(1)
		}
		if err := out.Encode(verdict{
			Kind: u.GetKind(), Name: u.GetName(),
			Status: string(result.Status), Message: result.Message,
		}); err != nil {
			fmt.Fprintf(os.Stderr, "kstatus: write: %v\n", err)
			os.Exit(2)
		}
	}
}
