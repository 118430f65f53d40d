{{/* The namespaces every webhook sees, as in deploy/overlays/<scope>. */}}
{{- define "stateful-guard.namespaceSelector" -}}
namespaceSelector:
  matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values:
    - kube-system
    - {{ .Release.Namespace }}
  {{- if eq .Values.scope "namespaced" }}
  - key: stateful-guard.io/mode
    operator: Exists
  {{- else if eq .Values.scope "cluster-wide" }}
  - key: stateful-guard.io/mode
    operator: NotIn
    values:
    - "off"
  {{- else }}
  {{- fail "scope must be namespaced or cluster-wide" }}
  {{- end }}
{{- end -}}

{{/* The webhooks' caBundle: the CA given with --set-file tls.ca=DIR/ca.crt, else none
(cert-manager's cainjector fills it). */}}
{{- define "stateful-guard.caBundle" -}}
{{- with .Values.tls.ca }}caBundle: {{ b64enc . }}{{ end }}
{{- end -}}
