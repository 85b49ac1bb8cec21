{{- define "ebrain.labels" -}}
app.kubernetes.io/part-of: enterprise-brain
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "ebrain.image" -}}
{{ printf "%sebrain-%s:%s" .root.Values.image.registry .role .root.Values.image.tag }}
{{- end -}}

{{/* Kafka settings every Kafka client shares (EBRAIN_KAFKA__*). */}}
{{- define "ebrain.kafkaEnv" -}}
- name: EBRAIN_KAFKA__BOOTSTRAP
  value: {{ .Values.kafka.bootstrap | quote }}
- name: EBRAIN_KAFKA__ENABLE_IDEMPOTENCE
  value: {{ .Values.kafka.enableIdempotence | quote }}
- name: EBRAIN_KAFKA__PARTITIONS
  value: {{ .Values.kafka.partitions | quote }}
{{- end -}}

{{/* /metrics of every ebrain service: on all interfaces of the pod (the settings default to 127.0.0.1). */}}
{{- define "ebrain.metricsEnv" -}}
- name: EBRAIN_METRICS_PORT
  value: {{ .Values.metrics.port | quote }}
- name: EBRAIN_METRICS_ADDR
  value: "0.0.0.0"
{{- end -}}

{{/* Prometheus scrape annotations. */}}
{{- define "ebrain.scrape" -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.metrics.port | quote }}
prometheus.io/path: /metrics
{{- end -}}

{{- define "ebrain.probes" -}}
livenessProbe:
  httpGet: {path: /metrics, port: metrics}
  initialDelaySeconds: 30
  periodSeconds: 15
  failureThreshold: 4
readinessProbe:
  httpGet: {path: /metrics, port: metrics}
  periodSeconds: 10
{{- end -}}

{{/* EBRAIN_BACKENDS: vLLM first, the llama.cpp CPU replica as fallback. */}}
{{- define "ebrain.backends" -}}
{{- $list := list -}}
{{- if .Values.vllm.enabled -}}
{{- $list = append $list (dict "name" "vllm" "url" (printf "http://%s-vllm:8000" .Release.Name) "model" .Values.vllm.servedModelName "tier" "gpu" "max_concurrency" 32) -}}
{{- end -}}
{{- if .Values.llamaServer.enabled -}}
{{- $list = append $list (dict "name" "llama-cpu" "url" (printf "http://%s-llama-server:8080" .Release.Name) "model" .Values.vllm.servedModelName "tier" "cpu" "max_concurrency" 2 "timeout_s" 120) -}}
{{- end -}}
{{- toJson $list -}}
{{- end -}}
