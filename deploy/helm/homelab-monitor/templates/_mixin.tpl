{{/*
The alert rules from the mixin: files/mixin-rules.yml (a copy of mixin/rules.yml,
kept by scripts/sync-deploy-assets.sh) rendered with .Values.prometheusRule.mixin,
the same keys as mixin/config.yml. scripts/gen-mixin.py does the same
substitution for the shipped rules file; tests/alerts.rs checks that both give
the same rules for the default and for a custom configuration.
*/}}

{{/* 15m -> "15 minutes", 1h -> "an hour"; anything else as written. */}}
{{- define "homelab-monitor.mixinHuman" -}}
{{- $units := dict "s" "second" "m" "minute" "h" "hour" "d" "day" "w" "week" -}}
{{- if regexMatch "^[0-9]+[smhdw]$" . -}}
{{- $n := regexReplaceAll "^([0-9]+)([smhdw])$" . "${1}" -}}
{{- $u := get $units (regexReplaceAll "^([0-9]+)([smhdw])$" . "${2}") -}}
{{- if eq $n "1" -}}{{ ternary "an" "a" (eq $u "hour") }} {{ $u }}{{- else -}}{{ $n }} {{ $u }}s{{- end -}}
{{- else -}}{{ . }}{{- end -}}
{{- end }}

{{/* One string with the placeholders replaced: dict "s" text "v" vars. */}}
{{- define "homelab-monitor.mixinSubst" -}}
{{- $v := .v -}}
{{- $s := .s | replace "$,SEL" $v.selComma | replace "$SEL" $v.selBraces | replace "$JOB" $v.job | replace "$RUNBOOK" $v.runbook -}}
{{- if $v.thr }}{{ $s = $s | replace "$THRESHOLD" $v.thr }}{{ end -}}
{{- if $v.forHuman }}{{ $s = $s | replace "$FOR" $v.forHuman }}{{ end -}}
{{- $s -}}
{{- end }}

{{/* The rule groups, as YAML. */}}
{{- define "homelab-monitor.mixinGroups" -}}
{{- $m := .Values.prometheusRule.mixin | default dict -}}
{{- $tpl := .Files.Get "files/mixin-rules.yml" | fromYaml -}}
{{- if or (not $tpl) (hasKey $tpl "Error") (not $tpl.groups) -}}
{{- fail "files/mixin-rules.yml is missing or unreadable: run scripts/sync-deploy-assets.sh" -}}
{{- end -}}
{{- $allowed := list "selector" "jobRegex" "runbookBaseUrl" "alerts" -}}
{{- range $k, $_ := $m -}}
{{- if not (has $k $allowed) -}}
{{- fail (printf "prometheusRule.mixin.%s: unknown key; allowed: %s" $k (join ", " $allowed)) -}}
{{- end -}}
{{- end -}}
{{- $sel := $m.selector | default "" -}}
{{- $base := dict "selComma" (ternary (printf ", %s" $sel) "" (ne $sel "")) "selBraces" (ternary (printf "{%s}" $sel) "" (ne $sel "")) "job" ($m.jobRegex | default "") "runbook" ($m.runbookBaseUrl | default "") -}}
{{- $over := $m.alerts | default dict -}}
{{- $names := list -}}
{{- range $g := $tpl.groups }}{{ range $r := $g.rules }}{{ $names = append $names $r.alert }}{{ end }}{{ end -}}
{{- range $name, $o := $over -}}
{{- if not (has $name $names) -}}
{{- fail (printf "prometheusRule.mixin.alerts.%s: no such alert (the names are in alerts/runbook.md)" $name) -}}
{{- end -}}
{{- range $k, $_ := $o -}}
{{- if not (has $k (list "enabled" "for" "severity" "threshold")) -}}
{{- fail (printf "prometheusRule.mixin.alerts.%s.%s: unknown key; allowed: enabled, for, severity, threshold" $name $k) -}}
{{- end -}}
{{- end -}}
{{- if and (hasKey $o "severity") (not (has $o.severity (list "info" "warning" "critical"))) -}}
{{- fail (printf "prometheusRule.mixin.alerts.%s.severity must be info, warning or critical" $name) -}}
{{- end -}}
{{- end -}}
{{- $groups := list -}}
{{- range $g := $tpl.groups -}}
{{- $rules := list -}}
{{- range $r := $g.rules -}}
{{- $o := get $over $r.alert | default dict -}}
{{- if ne (toString (get $o "enabled")) "false" -}}
{{- $for := ternary (get $o "for") (get $r "for") (hasKey $o "for") -}}
{{- $thr := "" -}}
{{- if hasKey $o "threshold" }}{{ $thr = toString $o.threshold }}{{ else if hasKey $r "threshold" }}{{ $thr = toString $r.threshold }}{{ end -}}
{{- $v := merge (dict "thr" $thr "forHuman" (ternary (include "homelab-monitor.mixinHuman" (toString $for)) "" (not (empty $for)))) $base -}}
{{- $new := dict "alert" $r.alert "expr" (include "homelab-monitor.mixinSubst" (dict "s" $r.expr "v" $v)) -}}
{{- if $for }}{{ $_ := set $new "for" $for }}{{ end -}}
{{- $labels := deepCopy ($r.labels | default dict) -}}
{{- if hasKey $o "severity" }}{{ $_ := set $labels "severity" $o.severity }}{{ end -}}
{{- $_ := set $new "labels" $labels -}}
{{- $ann := dict -}}
{{- range $k, $a := $r.annotations }}{{ $_ := set $ann $k (include "homelab-monitor.mixinSubst" (dict "s" $a "v" $v)) }}{{ end -}}
{{- $_ := set $new "annotations" $ann -}}
{{- $rules = append $rules $new -}}
{{- end -}}
{{- end -}}
{{- if $rules }}{{ $groups = append $groups (dict "name" $g.name "rules" $rules) }}{{ end -}}
{{- end -}}
{{- toYaml $groups -}}
{{- end }}
