#!/usr/bin/env python3
"""Generate dashboards/*.json (Grafana) from one description, so the five
dashboards share variables, links, units and thresholds.

    python3 scripts/gen-dashboards.py          # write dashboards/
    python3 scripts/gen-dashboards.py --check  # fail if dashboards/ is out of date
    python3 scripts/gen-dashboards.py --config my-mixin.yml --out DIR
                                               # with your mixin configuration

The mixin configuration (mixin/config.yml, scripts/gen-mixin.py) gives the
selector added to every query and the thresholds the alerts use (the 2-day
default age of a backup without max_age, the BackupShrank ratio), so a tuned
alert and its panel agree. Every panel has a description (the build fails
otherwise).

Colours follow what the exporter exports, never fixed numbers: certificates
by their level against certificate_warning_threshold_seconds /
certificate_critical_threshold_seconds (warning_days / critical_days), backups
by age / backup_max_age_seconds per source (2 days for a source without
max_age, as the BackupTooOldWithoutMaxAge alert). Counts show 0, not "No data",
on a healthy setup (`or vector(0)`); values that cannot be 0 (the soonest
expiry when there are no certificates) say so in words (noValue).
"""
import argparse
import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("gen_mixin", ROOT / "scripts" / "gen-mixin.py")
mixin = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mixin)

ARGS = argparse.ArgumentParser(description="Generate dashboards/*.json")
ARGS.add_argument("--check", action="store_true", help="fail if dashboards/ is out of date")
ARGS.add_argument("--config", help="your mixin configuration (merged over mixin/config.yml)")
ARGS.add_argument("--out", help="where to write the dashboards (default dashboards/)")
OPTS = ARGS.parse_args()
try:
    MIXIN = mixin.load_config(OPTS.config)
    mixin.validate(MIXIN, mixin.alert_names(), OPTS.config or "mixin/config.yml")
except mixin.ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)

DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'job=~"$job",instance=~"$instance"' + (f",{MIXIN['selector']}" if MIXIN.get("selector") else "")
DAY = 86400

GREEN, ORANGE, RED = "green", "orange", "red"


def thresholds(*steps):
    """steps: (value|None, color) ascending."""
    return {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in steps]}


def target(expr, legend="", instant=False, ref="A", table=False):
    t = {"datasource": DS, "expr": expr, "refId": ref, "legendFormat": legend}
    if instant:
        t["instant"] = True
        t["range"] = False
    if table:
        t["format"] = "table"
    return t


class Layout:
    def __init__(self):
        self.x = 0
        self.y = 0
        self.row_h = 0
        self.next_id = 1

    def place(self, w, h):
        if self.x + w > 24:
            self.x = 0
            self.y += self.row_h
            self.row_h = 0
        pos = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def id(self):
        i = self.next_id
        self.next_id += 1
        return i


def stat(L, title, expr, unit, th, w=4, h=4, desc="", decimals=None, no_value=None, extra=(), overrides=()):
    """extra: more targets (refId B, C...); overrides: Grafana field overrides."""
    targets = [target(expr, instant=True)] + [dict(t, instant=True, range=False) for t in extra]
    p = {
        "id": L.id(), "type": "stat", "title": title, "description": desc, "datasource": DS,
        "gridPos": L.place(w, h),
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit, "thresholds": th, "color": {"mode": "thresholds"}},
                        "overrides": list(overrides)},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "background", "graphMode": "none", "textMode": "auto"},
    }
    if decimals is not None:
        p["fieldConfig"]["defaults"]["decimals"] = decimals
    if no_value is not None:
        p["fieldConfig"]["defaults"]["noValue"] = no_value
    return p


def timeseries(L, title, targets, unit, th=None, w=12, h=8, desc=""):
    return {
        "id": L.id(), "type": "timeseries", "title": title, "description": desc, "datasource": DS,
        "gridPos": L.place(w, h),
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit, "thresholds": th or thresholds((None, GREEN)),
                                     "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10,
                                                "thresholdsStyle": {"mode": "off" if th is None else "line"}}},
                        "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
    }


def by_name(name, **props):
    """A field override: `props` (unit, thresholds, mappings, cell colour) for one column."""
    out = []
    for k, v in props.items():
        if k == "cell":
            out.append({"id": "custom.cellOptions", "value": {"type": v}})
        elif k == "thresholds":
            out.append({"id": "thresholds", "value": v})
            out.append({"id": "color", "value": {"mode": "thresholds"}})
        else:
            out.append({"id": k, "value": v})
    return {"matcher": {"id": "byName", "options": name}, "properties": out}


def by_ref(ref, **props):
    o = by_name("", **props)
    o["matcher"] = {"id": "byFrameRefID", "options": ref}
    return o


def table(L, title, targets, unit, th=None, sort_by=None, desc=False, rename=None, hide=None, w=24, h=8, description="",
          overrides=(), cell="color-text"):
    excl = {k: True for k in (hide or [])}
    excl.update({"Time": True, "__name__": True})
    transformations = []
    if len(targets) > 1:
        transformations.append({"id": "merge", "options": {}})
    transformations.append({"id": "organize", "options": {"excludeByName": excl, "renameByName": rename or {}}})
    p = {
        "id": L.id(), "type": "table", "title": title, "description": description, "datasource": DS,
        "gridPos": L.place(w, h),
        "targets": targets,
        "transformations": transformations,
        "fieldConfig": {"defaults": {"unit": unit, "thresholds": th or thresholds((None, GREEN)),
                                     "custom": {"cellOptions": {"type": cell}, "align": "auto"}},
                        "overrides": list(overrides)},
        "options": {"showHeader": True, "cellHeight": "sm",
                    "sortBy": [{"displayName": sort_by, "desc": desc}] if sort_by else []},
    }
    return p


def bargauge(L, title, expr, legend, unit, th, w=12, h=8, desc=""):
    return {
        "id": L.id(), "type": "bargauge", "title": title, "description": desc, "datasource": DS,
        "gridPos": L.place(w, h),
        "targets": [target(expr, legend=legend, instant=True)],
        "fieldConfig": {"defaults": {"unit": unit, "thresholds": th, "color": {"mode": "thresholds"}}, "overrides": []},
        "options": {"orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True,
                    "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
    }


def variables(extra=()):
    v = [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0, "refresh": 1, "regex": "", "options": []},
        {"name": "job", "label": "Job", "type": "query", "datasource": DS,
         "query": {"query": "label_values(homelab_monitor_build_info, job)", "refId": "job"},
         "definition": "label_values(homelab_monitor_build_info, job)",
         "refresh": 2, "includeAll": True, "multi": True, "allValue": ".*", "current": {}, "sort": 1, "hide": 0, "options": []},
        {"name": "instance", "label": "Instance", "type": "query", "datasource": DS,
         "query": {"query": 'label_values(homelab_monitor_build_info{job=~"$job"}, instance)', "refId": "instance"},
         "definition": 'label_values(homelab_monitor_build_info{job=~"$job"}, instance)',
         "refresh": 2, "includeAll": True, "multi": True, "allValue": ".*", "current": {}, "sort": 1, "hide": 0, "options": []},
    ]
    v.extend(extra)
    return {"list": v}


def row(L, title):
    # "targets": [] keeps every panel iterable for the stack test; Grafana ignores it on rows.
    L.x = 24  # a row always starts on a new line
    return {"id": L.id(), "type": "row", "title": title, "collapsed": False,
            "gridPos": L.place(24, 1), "panels": [], "targets": []}


HC_FAILING = f"count(health_check_success{{{SEL}}} == 0) or vector(0)"


def health_row(L):
    """The health-check row (health_checks: in monitoring-config.yaml)."""
    return [
        row(L, "Health checks"),
        stat(L, "Failing health checks", HC_FAILING, "none", COUNT_TH, w=4, h=8,
             desc="Health checks (http, tcp, dns, disk, file_age, command) whose last run failed."),
        table(L, "Health checks (0 = failing)", [target(f"health_check_success{{{SEL}}}", instant=True, table=True)], "none",
              thresholds((None, RED), (1, GREEN)), sort_by="State", rename={"Value": "State"}, hide=["job", "instance"], w=10),
        timeseries(L, "Health check duration", [target(f"health_check_duration_seconds{{{SEL}}}", "{{check}} ({{type}})")], "s", w=10),
    ]


def dashboard(uid, title, panels, extra_vars=(), description=""):
    return {
        "uid": uid, "title": title, "description": description,
        "tags": ["homelab-monitor"], "editable": True, "graphTooltip": 1,
        "schemaVersion": 39, "version": 1, "refresh": "1m", "timezone": "browser",
        "time": {"from": "now-24h", "to": "now"},
        "templating": variables(extra_vars),
        "annotations": {"list": []},
        "links": [{"type": "dashboards", "tags": ["homelab-monitor"], "asDropdown": True,
                   "title": "Homelab dashboards", "includeVars": True, "keepTime": True, "icon": "external link"}],
        "panels": panels,
    }


CERT_LEFT = f"certificate_not_after_timestamp_seconds{{{SEL}}} - time()"
# Each certificate's level against the exported thresholds (warning_days,
# critical_days): 0 fine, 1 inside warning_days, 2 inside critical_days, 3 expired.
CERT_LEVEL = (
    f"({CERT_LEFT} < bool on (job, instance) group_left () certificate_warning_threshold_seconds{{{SEL}}})"
    f" + ({CERT_LEFT} < bool on (job, instance) group_left () certificate_critical_threshold_seconds{{{SEL}}})"
    f" + ({CERT_LEFT} < bool 0)"
)
LEVEL_TH = thresholds((None, GREEN), (1, ORANGE), (2, RED))
LEVEL_MAP = [{"type": "value", "options": {
    "0": {"text": "ok", "color": GREEN, "index": 0},
    "1": {"text": "inside warning_days", "color": ORANGE, "index": 1},
    "2": {"text": "inside critical_days", "color": RED, "index": 2},
    "3": {"text": "expired", "color": RED, "index": 3}}}]
CERT_RATIO = f"certificate_lifetime_remaining_ratio{{{SEL}}}"
# Level against the exported lifetime ratios (warning_ratio, critical_ratio):
# 0 fine, 1 under warning_ratio, 2 under critical_ratio.
CERT_RATIO_LEVEL = (
    f"({CERT_RATIO} < bool on (job, instance) group_left () certificate_lifetime_warning_threshold_ratio{{{SEL}}})"
    f" + ({CERT_RATIO} < bool on (job, instance) group_left () certificate_lifetime_critical_threshold_ratio{{{SEL}}})"
)
RATIO_LEVEL_MAP = [{"type": "value", "options": {
    "0": {"text": "ok", "color": GREEN, "index": 0},
    "1": {"text": "under warning_ratio", "color": ORANGE, "index": 1},
    "2": {"text": "under critical_ratio", "color": RED, "index": 2}}}]
NEUTRAL = thresholds((None, "blue"))
BACKUP_AGE = f"time() - backup_last_success_timestamp_seconds{{{SEL}}}"
# max_age per source; BackupTooOldWithoutMaxAge's threshold (2 days) without one.
DEFAULT_MAX_AGE_DAYS = mixin.threshold(MIXIN, "BackupTooOldWithoutMaxAge")
DAYS_WITHOUT_MAX_AGE = f"{mixin.number(DEFAULT_MAX_AGE_DAYS)} days"
SHRANK_RATIO = mixin.threshold(MIXIN, "BackupShrank")
BACKUP_MAX_AGE = (f"(backup_max_age_seconds{{{SEL}}} or on (job, instance, source)"
                  f" (0 * backup_last_success_timestamp_seconds{{{SEL}}} + {mixin.number(DEFAULT_MAX_AGE_DAYS * DAY)}))")
BACKUP_AGE_RATIO = f"({BACKUP_AGE}) / on (job, instance, source) {BACKUP_MAX_AGE}"
RATIO_TH = thresholds((None, GREEN), (0.9, ORANGE), (1, RED))
# Backup sets (restic, borg, borgmatic, pgbackrest, barman) and recovery windows.
BACKUP_SET_AGE = f"time() - backup_set_last_success_timestamp_seconds{{{SEL}}}"
BACKUP_SET_AGE_RATIO = (f"({BACKUP_SET_AGE}) / on (job, instance, source, set)"
                        f" backup_set_max_age_seconds{{{SEL}}}")
RECOVERY_WINDOW = f"time() - backup_oldest_restorable_timestamp_seconds{{{SEL}}}"
COUNT_TH = thresholds((None, GREEN), (1, RED))


CERT_RATIO_LEVEL_COLUMN = by_name("Level", unit="none", thresholds=LEVEL_TH, mappings=RATIO_LEVEL_MAP, cell="color-background")
CERT_LEVEL_COLUMN = by_name("Level", unit="none", thresholds=LEVEL_TH, mappings=LEVEL_MAP, cell="color-background")
BACKUP_RATIO_COLUMN = by_name("Age / max_age", unit="percentunit", thresholds=RATIO_TH, cell="color-background")


def overview():
    L = Layout()
    node_var = {"name": "node", "label": "Host", "type": "query", "datasource": DS,
                "query": {"query": "label_values(node_uname_info, instance)", "refId": "node"},
                "definition": "label_values(node_uname_info, instance)",
                "refresh": 2, "includeAll": True, "multi": True, "allValue": ".*", "current": {}, "sort": 1, "hide": 0, "options": []}
    p = [
        stat(L, "Drifted states", f"count(terraform_state_drift{{{SEL}}} > 0) or vector(0)", "none", COUNT_TH,
             desc="State files whose latest drift report found drift."),
        stat(L, "Unreadable states", f"count(terraform_state_up{{{SEL}}} == 0) or vector(0)", "none", COUNT_TH),
        stat(L, "Soonest certificate expiry", f"min({CERT_LEFT})", "s", NEUTRAL,
             no_value="no certificates",
             extra=[target(f"max({CERT_LEVEL})", ref="B")],
             overrides=[by_ref("B", thresholds=LEVEL_TH, mappings=LEVEL_MAP)],
             desc="Time left on the certificate that expires first, and the worst level against warning_days / critical_days (from the exporter's threshold metrics)."),
        stat(L, "Certificates inside warning_days",
             f"count(({CERT_LEFT}) < on (job, instance) group_left () certificate_warning_threshold_seconds{{{SEL}}}) or vector(0)",
             "none", thresholds((None, GREEN), (1, ORANGE))),
        stat(L, "Stalest backup (age / max_age)", f"max({BACKUP_AGE_RATIO})", "percentunit", RATIO_TH,
             no_value="no backup sources",
             desc=f"Highest age of a source's last successful backup as a share of its max_age ({DAYS_WITHOUT_MAX_AGE} without one); 100% is when BackupTooOld fires."),
        stat(L, "Failing monitors", f"count(homelab_monitor_collector_success{{{SEL}}} == 0) or vector(0)", "none", COUNT_TH),
        table(L, "Certificates by time left (10 soonest)",
              [target(f"bottomk(10, {CERT_LEFT})", instant=True, table=True, ref="A"),
               target(f"bottomk(10, {CERT_LEFT}) * 0 + ({CERT_LEVEL})",
                      instant=True, table=True, ref="B")],
              "s", NEUTRAL, sort_by="Time left", rename={"Value #A": "Time left", "Value #B": "Level"},
              hide=["job", "instance"], w=12, cell="auto", overrides=[CERT_LEVEL_COLUMN]),
        table(L, "Backups by age",
              [target(BACKUP_AGE, instant=True, table=True, ref="A"),
               target(BACKUP_AGE_RATIO, instant=True, table=True, ref="B")], "s", NEUTRAL,
              sort_by="Age / max_age", desc=True, rename={"Value #A": "Age", "Value #B": "Age / max_age"},
              hide=["job", "instance"], w=12, cell="auto", overrides=[BACKUP_RATIO_COLUMN]),
        timeseries(L, "Host CPU busy", [target('1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle",instance=~"$node"}[$__rate_interval]))', "{{instance}}")],
                   "percentunit", w=8),
        timeseries(L, "Host memory available", [target('node_memory_MemAvailable_bytes{instance=~"$node"} / node_memory_MemTotal_bytes{instance=~"$node"}', "{{instance}}")],
                   "percentunit", w=8),
        timeseries(L, "Host disk free (least free filesystem)", [target('min by (instance) (node_filesystem_avail_bytes{instance=~"$node",fstype!~"tmpfs|overlay|squashfs"} / node_filesystem_size_bytes{instance=~"$node",fstype!~"tmpfs|overlay|squashfs"})', "{{instance}}")],
                   "percentunit", w=8),
    ] + health_row(L)
    return dashboard("homelab-overview", "Homelab Overview", p, extra_vars=[node_var],
                     description="Fleet health at a glance: Terraform drift, certificates, backups, health checks, the exporter and hosts.")


def terraform():
    L = Layout()
    s = f'{SEL},state_file=~"$state_file"'
    sf_var = {"name": "state_file", "label": "State file", "type": "query", "datasource": DS,
              "query": {"query": f'label_values(terraform_state_up{{{SEL}}}, state_file)', "refId": "state_file"},
              "definition": f'label_values(terraform_state_up{{{SEL}}}, state_file)',
              "refresh": 2, "includeAll": True, "multi": True, "allValue": ".*", "current": {}, "sort": 1, "hide": 0, "options": []}
    p = [
        stat(L, "States", f"count(terraform_state_up{{{s}}}) or vector(0)", "none", thresholds((None, RED), (1, GREEN)),
             desc="State files monitored; 0 means nothing is monitored (no state found, or the folder is not mounted)."),
        stat(L, "Drifted instances", f"sum(terraform_state_drift{{{s}}}) or vector(0)", "none", COUNT_TH),
        stat(L, "Pending changes", f"(sum(terraform_state_pending_changes{{{s}}}) or vector(0)) + (sum(terraform_state_pending_output_changes{{{s}}}) or vector(0))", "none",
             thresholds((None, GREEN), (1, ORANGE)),
             desc="Changes the latest plans would apply: resource create/update/delete/replace/forget/move/import and root output changes (what makes plan -detailed-exitcode return 2)."),
        stat(L, "Unapproved changes", f"sum(terraform_state_unapproved_changes{{{s}}}) or vector(0)", "none", COUNT_TH),
        stat(L, "Tainted + deposed", f"(sum(terraform_state_tainted_instances{{{s}}}) or vector(0)) + (sum(terraform_state_deposed_instances{{{s}}}) or vector(0))", "none", thresholds((None, GREEN), (1, ORANGE))),
        stat(L, "Locked remote states", f"count(terraform_state_locked{{{s}}} == 1) or vector(0)", "none", thresholds((None, GREEN), (1, ORANGE)),
             desc="S3 lock files and locked HCP workspaces; a lock held for hours is a stuck or crashed run."),
        stat(L, "Oldest drift report", f"max(time() - terraform_state_drift_report_timestamp_seconds{{{s}}})", "s",
             thresholds((None, GREEN), (DAY, ORANGE), (3 * DAY, RED)), no_value="no drift reports", w=6,
             desc="Red after 3 days, when TerraformDriftReportStale fires."),
        stat(L, "Checks failing in drift reports", f'sum(terraform_state_drift_report_checks{{{s},status=~"fail|error"}}) or vector(0)', "none", COUNT_TH, w=6,
             desc="check blocks, preconditions and postconditions that fail or error in the latest drift reports (TerraformDriftReportChecksFailing)."),
        stat(L, "Partial drift reports", f"count(terraform_state_drift_report_complete{{{s}}} == 0) or vector(0)", "none", thresholds((None, GREEN), (1, ORANGE)), w=6,
             desc="Drift reports from a plan Terraform marks incomplete (-target, deferred changes): drift outside them is not seen (TerraformDriftReportIncomplete)."),
        stat(L, "Not checked (encrypted)", f"count(terraform_state_encrypted{{{s}}} == 1) or vector(0)", "none", thresholds((None, GREEN), (1, ORANGE)), w=6,
             desc="OpenTofu encrypted states: only the envelope is readable, so their contents are not checked (TerraformStateNotChecked)."),
        table(L, "States", [
            target(f"terraform_state_up{{{s}}}", instant=True, table=True, ref="A"),
            target(f"terraform_state_drift{{{s}}}", instant=True, table=True, ref="B"),
            target(f"sum without (action) (terraform_state_pending_changes{{{s}}}) + terraform_state_pending_output_changes{{{s}}}", instant=True, table=True, ref="C"),
            target(f"terraform_state_tainted_instances{{{s}}}", instant=True, table=True, ref="D"),
            target(f"terraform_state_serial{{{s}}}", instant=True, table=True, ref="E"),
            target(f"time() - terraform_state_last_modified_timestamp_seconds{{{s}}}", instant=True, table=True, ref="F"),
        ], "none", sort_by="Drifted", desc=True,
            rename={"Value #A": "Readable", "Value #B": "Drifted", "Value #C": "Pending", "Value #D": "Tainted",
                    "Value #E": "Serial", "Value #F": "Last written (ago)"},
            hide=["job", "instance"], description="One row per state file, most drifted first."),
        timeseries(L, "Drift per state", [target(f"terraform_state_drift{{{s}}}", "{{state_file}}")], "none",
                   th=thresholds((None, GREEN), (1, RED))),
        timeseries(L, "Serial per state", [target(f"terraform_state_serial{{{s}}}", "{{state_file}}")], "none"),
        bargauge(L, "Pending changes by action", f'sum by (action) (terraform_state_pending_changes{{{s}}}) or label_replace(sum(terraform_state_pending_output_changes{{{s}}}), "action", "output", "", "")', "{{action}}", "none",
                 thresholds((None, GREEN), (1, ORANGE)), w=8),
        bargauge(L, "Check results by status", f"sum by (status) (terraform_state_check_results{{{s}}})", "{{status}}", "none",
                 thresholds((None, GREEN)), w=8),
        bargauge(L, "Resource instances by type (top 15)", f"topk(15, sum by (type) (terraform_state_resource_instances{{{s}}}))", "{{type}}", "none",
                 thresholds((None, GREEN)), w=8),
        timeseries(L, "Remote state received", [target(f"sum by (state_file) (rate(terraform_state_remote_bytes_total{{{s}}}[$__rate_interval])) or on() vector(0)", "{{state_file}}")],
                   "Bps", w=24, h=6,
                   desc="Bytes of remote state (S3, HTTP, pg, HCP) downloaded per second. Requests are conditional: an unchanged state costs 0, so a steady non-zero line means a state that changes at every check, or a backend ignoring ETags (egress costs money)."),
        table(L, "Current read errors", [target(f"terraform_state_error_info{{{SEL}}} or on() vector(0)", instant=True, table=True)], "none",
              hide=["job", "instance", "Value"], description="Empty means every state, drift report and baseline was read."),
        table(L, "Policy violations", [
            target(f'sum by (state_file, policy) (terraform_state_policy_violations{{{s},severity=~"critical|high"}})', instant=True, table=True, ref="A"),
            target(f"sum by (state_file, policy) (terraform_state_policy_violations{{{s}}})", instant=True, table=True, ref="B"),
            target(f"min by (state_file, policy) (terraform_state_policy_evaluation_success{{{s}}})", instant=True, table=True, ref="C"),
        ], "none", sort_by="Critical + high", desc=True,
            rename={"Value #A": "Critical + high", "Value #B": "All violations", "Value #C": "Evaluated"},
            description="Rego compliance policies (docs/policies.md) per state file, worst first; Evaluated 0 means the policy failed (see the log)."),
    ]
    return dashboard("homelab-terraform", "Terraform State", p, extra_vars=[sf_var],
                     description="Drift, pending and unapproved changes, tainted objects and read errors per state file.")


def certificates():
    L = Layout()
    p = [
        stat(L, "Certificates", f"count(certificate_not_after_timestamp_seconds{{{SEL}}}) or vector(0)", "none", thresholds((None, GREEN))),
        stat(L, "Expired", f"sum(certificate_expired{{{SEL}}}) or vector(0)", "none", COUNT_TH),
        stat(L, "Inside critical_days",
             f"count(({CERT_LEFT}) < on (job, instance) group_left () certificate_critical_threshold_seconds{{{SEL}}}) or vector(0)",
             "none", COUNT_TH),
        stat(L, "Endpoints not verified", f"count(certificate_verified{{{SEL}}} == 0) or vector(0)", "none", thresholds((None, GREEN), (1, ORANGE))),
        stat(L, "Sources down", f"count(certificate_source_up{{{SEL}}} == 0) or vector(0)", "none", COUNT_TH),
        stat(L, "Not yet valid", f"count(certificate_not_yet_valid{{{SEL}}} == 1) or vector(0)", "none", COUNT_TH,
             desc="Certificates whose notBefore is still in the future: clients reject them (CertificateNotYetValid)."),
        stat(L, "Revoked",
             f"count((certificate_revoked{{{SEL}}} == 1) or (certificate_ocsp_status{{{SEL}, status=\"revoked\"}} == 1) or (certificate_revocation_status{{{SEL}, status=\"revoked\"}} == 1)) or vector(0)",
             "none", COUNT_TH,
             desc="Certificates listed in a CRL of their issuer (crls), endpoints stapling an OCSP response that says revoked, and endpoints whose CA says revoked to an active check (CertificateRevoked, CertificateOCSPRevoked, CertificateRevocationRevoked)."),
        stat(L, "Stale CRLs", f"count(certificate_crl_next_update_timestamp_seconds{{{SEL}}} < time()) or vector(0)", "none", COUNT_TH,
             desc="CRL files past their nextUpdate (CertificateCRLStale)."),
        stat(L, "Revocation checks failing", f"count(certificate_revocation_check_up{{{SEL}}} == 0) or vector(0)", "none", COUNT_TH,
             desc="Active OCSP / CRL checks (endpoints with revocation:) without a verified answer at the last check: their status is unknown (CertificateRevocationCheckFailing after an hour)."),
        table(L, "Revocation status",
              [target(f'certificate_revocation_status{{{SEL}}} == 1 or label_replace(certificate_ocsp_status{{{SEL}}} == 1, "method", "staple", "", "")', instant=True, table=True)],
              "none", hide=["job", "instance", "Value", "source"],
              description="The current revocation status of each endpoint's leaf: method staple = the OCSP response the server staples (not signature-checked), ocsp = the CA's responder, crl = the CA's CRL downloaded (both verified against the issuer; unknown when the check failed). Revoked fires CertificateOCSPRevoked / CertificateRevocationRevoked."),
        table(L, "Revocation data valid for",
              [target(f'(certificate_revocation_next_update_timestamp_seconds{{{SEL}}} or label_replace(certificate_ocsp_next_update_timestamp_seconds{{{SEL}}}, "method", "staple", "", "") or certificate_crl_next_update_timestamp_seconds{{{SEL}}}) - time()', instant=True, table=True)],
              "s", NEUTRAL, sort_by="Valid for", rename={"Value": "Valid for"}, hide=["job", "instance", "source"],
              description="Time until the nextUpdate of each CRL file (path), OCSP staple (method staple) and answer of an active check (method ocsp / crl); negative means stale (CertificateCRLStale for CRL files)."),
        table(L, "Certificates by time left",
              [target(CERT_LEFT, instant=True, table=True, ref="A"), target(CERT_LEVEL, instant=True, table=True, ref="B")],
              "s", NEUTRAL, sort_by="Time left", rename={"Value #A": "Time left", "Value #B": "Level"},
              hide=["job", "instance"], cell="auto", overrides=[CERT_LEVEL_COLUMN],
              description="Every certificate (files, bundles, endpoint chains), soonest expiry first; Level against the configured warning_days / critical_days."),
        table(L, "Lifetime left",
              [target(CERT_RATIO, instant=True, table=True, ref="A"), target(CERT_RATIO_LEVEL, instant=True, table=True, ref="B")],
              "percentunit", NEUTRAL, sort_by="Lifetime left", rename={"Value #A": "Lifetime left", "Value #B": "Level"},
              hide=["job", "instance"], cell="auto", overrides=[CERT_RATIO_LEVEL_COLUMN],
              description="Share of each certificate's lifetime (notAfter - notBefore) left, lowest first; Level against the configured warning_ratio / critical_ratio. The alerts (CertificateLifetimeLow / CertificateLifetimeCritical) use these for certificates living at most short_lived_days, and for longer-lived ones only inside warning_days / critical_days."),
        timeseries(L, "Time left, 10 soonest", [
            target(f"bottomk(10, {CERT_LEFT})", "{{path}}{{endpoint}} #{{serial}}", ref="A"),
            target(f"max(certificate_warning_threshold_seconds{{{SEL}}})", "warning_days", ref="B"),
            target(f"max(certificate_critical_threshold_seconds{{{SEL}}})", "critical_days", ref="C"),
        ], "s", w=24, desc="The warning_days and critical_days lines come from the exporter's threshold metrics."),
        table(L, "Certificate details", [target(f"certificate_info{{{SEL}}}", instant=True, table=True)], "none",
              hide=["job", "instance", "Value"]),
        # Kubernetes sources (certificate_expiry.kubernetes, issue 18).
        table(L, "Kubernetes sources",
              [target(f"min without (instance, pod) (certificate_kubernetes_source_up{{{SEL}}})", instant=True, table=True, ref="A"),
               target(f"min without (instance, pod) (certificate_kubernetes_source_synced{{{SEL}}})", instant=True, table=True, ref="B"),
               target(f"sum without (instance, pod) (certificate_kubernetes_source_objects{{{SEL}}})", instant=True, table=True, ref="C")],
              "none", rename={"Value #A": "Up", "Value #B": "Synced", "Value #C": "Objects"},
              hide=["job", "instance"], w=12),
        table(L, "Kubernetes source errors",
              [target(f"max without (instance, pod) (certificate_kubernetes_source_error_info{{{SEL}}}) == 1", instant=True, table=True)], "none",
              hide=["job", "instance", "Value"], w=12),
        table(L, "Expiring Secrets by namespace",
              [target(f"count by (namespace) ((certificate_not_after_timestamp_seconds{{{SEL}, source=\"secret\"}} - time())"
                      f" < on (job, instance) group_left () certificate_warning_threshold_seconds{{{SEL}}})",
                      instant=True, table=True)],
              "none", rename={"Value": "Certificates inside warning_days"}, sort_by="Certificates inside warning_days",
              desc=True, hide=["job", "instance"], w=24),
    ]
    return dashboard("homelab-certificates", "Certificates", p, description="TLS certificates on disk and on the wire, by time left.")


def backups():
    L = Layout()
    p = [
        stat(L, "Sources", f"count(backup_source_up{{{SEL}}}) or vector(0)", "none", thresholds((None, GREEN))),
        stat(L, "Sources down", f"count(backup_source_up{{{SEL}}} == 0) or vector(0)", "none", COUNT_TH),
        stat(L, "Older than max_age", f"count(({BACKUP_AGE_RATIO}) > 1) or vector(0)", "none", COUNT_TH,
             desc=f"Sources whose last successful backup is older than their max_age ({DAYS_WITHOUT_MAX_AGE} without one)."),
        stat(L, "Verification failing", f"count(backup_verification_success{{{SEL}}} == 0) or vector(0)", "none", COUNT_TH),
        stat(L, f"Shrank below {mixin.number(SHRANK_RATIO * 100)}%", f"count(backup_size_change_ratio{{{SEL}}} < {mixin.number(SHRANK_RATIO)}) or vector(0)", "none", thresholds((None, GREEN), (1, ORANGE))),
        stat(L, "Stalest backup (age / max_age)", f"max({BACKUP_AGE_RATIO})", "percentunit", RATIO_TH,
             no_value="no backup sources"),
        table(L, "Backups by age", [
            target(BACKUP_AGE, instant=True, table=True, ref="A"),
            target(BACKUP_MAX_AGE, instant=True, table=True, ref="B"),
            target(BACKUP_AGE_RATIO, instant=True, table=True, ref="E"),
            target(f"backup_last_size_bytes{{{SEL}}}", instant=True, table=True, ref="C"),
            target(f"backup_snapshots{{{SEL}}}", instant=True, table=True, ref="D"),
        ], "s", NEUTRAL, sort_by="Age / max_age", desc=True,
            rename={"Value #A": "Age", "Value #B": "Max age", "Value #E": "Age / max_age", "Value #C": "Last size",
                    "Value #D": "Snapshots in retention"},
            hide=["job", "instance"], cell="auto",
            overrides=[BACKUP_RATIO_COLUMN, by_name("Last size", unit="bytes"), by_name("Snapshots in retention", unit="none")],
            description=f"Stalest source first; Age / max_age is coloured against each source's own max_age ({DAYS_WITHOUT_MAX_AGE} without one)."),
        timeseries(L, "Last backup size", [target(f"backup_last_size_bytes{{{SEL}}}", "{{source}}")], "bytes"),
        timeseries(L, "Size change (last / previous)", [target(f"backup_size_change_ratio{{{SEL}}}", "{{source}}")], "percentunit",
                   th=thresholds((None, RED), (0.5, GREEN))),
        timeseries(L, "Backup age / max_age", [target(BACKUP_AGE_RATIO, "{{source}}")], "percentunit",
                   th=thresholds((None, GREEN), (1, RED)),
                   desc=f"Each source's age against its own max_age ({DAYS_WITHOUT_MAX_AGE} without one): above 100% BackupTooOld fires."),
        timeseries(L, "Snapshots inside retention", [target(f"backup_snapshots{{{SEL}}}", "{{source}}")], "none"),
        stat(L, "Sets stopped", f"count(({BACKUP_SET_AGE_RATIO}) > 1) or vector(0)", "none", COUNT_TH,
             desc="Backup sets (hosts/paths, archive globs, stanzas, servers, repositories) older than their max_age: BackupSetTooOld."),
        stat(L, "Sources over max_sets", f"count(backup_sets_truncated{{{SEL}}} == 1) or vector(0)", "none",
             thresholds((None, GREEN), (1, ORANGE)),
             desc="Sources holding more sets than max_sets: only the first max_sets (by label) have set series."),
        stat(L, "Shortest recovery window", f"min({RECOVERY_WINDOW})", "s", NEUTRAL, no_value="no backups",
             desc="Age of the youngest oldest-restorable backup: how far back the worst set can be restored."),
        table(L, "Backup sets by age", [
            target(BACKUP_SET_AGE, instant=True, table=True, ref="A"),
            target(f"backup_set_max_age_seconds{{{SEL}}}", instant=True, table=True, ref="B"),
            target(BACKUP_SET_AGE_RATIO, instant=True, table=True, ref="E"),
            target(f"backup_set_snapshots{{{SEL}}}", instant=True, table=True, ref="D"),
            target(RECOVERY_WINDOW, instant=True, table=True, ref="F"),
        ], "s", NEUTRAL, sort_by="Age / max_age", desc=True,
            rename={"Value #A": "Age", "Value #B": "Max age", "Value #E": "Age / max_age",
                    "Value #D": "Snapshots in retention", "Value #F": "Recovery window"},
            hide=["job", "instance"], cell="auto",
            overrides=[BACKUP_RATIO_COLUMN, by_name("Snapshots in retention", unit="none")],
            description="One row per backup set, stalest first; Recovery window is how far back its oldest restorable backup reaches."),
        timeseries(L, "Recovery window", [target(RECOVERY_WINDOW, "{{source}} {{set}}")], "s",
                   desc="Age of each set's oldest restorable backup; BackupRecoveryWindowShort fires below a source's min_recovery_window."),
        timeseries(L, "Set age / max_age", [target(BACKUP_SET_AGE_RATIO, "{{source}} {{set}}")], "percentunit",
                   th=thresholds((None, GREEN), (1, RED)),
                   desc="Each set's age against its max_age: above 100% BackupSetTooOld fires."),
    ]
    return dashboard("homelab-backups", "Backups", p, description="Backup freshness, size, verification and retention per source.")


def exporter():
    L = Layout()
    p = [
        stat(L, "Exporter up", f'up{{{SEL}}}', "none", thresholds((None, RED), (1, GREEN)), w=6),
        stat(L, "Monitors", f"count(homelab_monitor_collector_success{{{SEL}}}) or vector(0)", "none", thresholds((None, RED), (1, GREEN)), w=6),
        stat(L, "Failing monitors", f"count(homelab_monitor_collector_success{{{SEL}}} == 0) or vector(0)", "none", COUNT_TH, w=6),
        stat(L, "Failing targets", f"sum(homelab_monitor_targets_failing{{{SEL}}}) or vector(0)", "none", thresholds((None, GREEN), (1, ORANGE)), w=6),
        timeseries(L, "Collection duration", [target(f"homelab_monitor_collector_duration_seconds{{{SEL}}}", "{{monitor}}")], "s"),
        timeseries(L, "Age of served values (cached for check_interval)", [target(f"homelab_monitor_cache_age_seconds{{{SEL}}}", "{{monitor}}")], "s"),
        timeseries(L, "Collections per minute", [target(f"rate(homelab_monitor_collections_total{{{SEL}}}[$__rate_interval]) * 60", "{{monitor}}")], "none"),
        timeseries(L, "Stale monitors", [target(f"homelab_monitor_collector_stale{{{SEL}}}", "{{monitor}}")], "none",
                   th=thresholds((None, GREEN), (1, RED))),
        table(L, "Build", [target(f"homelab_monitor_build_info{{{SEL}}}", instant=True, table=True)], "none", hide=["Value"]),
    ]
    return dashboard("homelab-exporter", "Exporter Health", p, description="homelab-monitor itself: collections, durations, cache age.")


DASHBOARDS = {
    "homelab-overview.json": overview,
    "terraform-state.json": terraform,
    "certificates.json": certificates,
    "backups.json": backups,
    "exporter-health.json": exporter,
}

# Descriptions of the panels built without one, by (dashboard uid, title) or by
# title. describe() fails the build when a panel has none.
DESCRIPTIONS = {
    ("homelab-backups", "Sources"): "Backup sources configured (restic, borg, pg, manifests, folders), read or not.",
    ("homelab-backups", "Sources down"): "Sources whose manifest, repository listing or folder could not be read at the last collection (BackupSourceDown after 15 minutes); their other values are the last good ones.",
    "Stalest backup (age / max_age)": "Highest age of a source's last successful backup as a share of its own max_age; 100% is when BackupTooOld fires.",
    "Verification failing": "Sources whose last backup does not match its own manifest or checksums (BackupVerificationFailed).",
    "Last backup size": "Size of each source's newest backup, in bytes, as the backup tool reports it.",
    "Size change (last / previous)": "Size of the newest backup divided by the one before; a sudden drop below the BackupShrank threshold means data went missing from the backup.",
    "Snapshots inside retention": "Backups each source keeps inside its retention window; BackupTooFewSnapshots fires below the source's min_snapshots.",
    "Certificates": "Certificates watched: every member of every file, bundle and endpoint chain.",
    "Expired": "Certificates whose notAfter has passed (CertificateExpired).",
    "Inside critical_days": "Certificates expiring within the configured critical_days (CertificateExpiringCritical).",
    "Endpoints not verified": "TLS endpoints whose chain does not verify against the configured trust roots (CertificateNotVerified).",
    ("homelab-certificates", "Sources down"): "Certificate files or endpoints that could not be read or reached at the last collection (CertificateSourceDown after 15 minutes).",
    "Kubernetes sources": "Each certificate_expiry.kubernetes source (kind, namespace scope), over all replicas: Up 0 when the last LIST or WATCH of any replica failed (CertificateKubernetesSourceDown after 15 minutes; its certificates are then the last ones read), Synced 1 once every replica's first complete LIST arrived, Objects holding certificate keys (summed over the shards, which split them by UID).",
    "Kubernetes source errors": "Why a Kubernetes source is down (certificate_kubernetes_source_error_info reason: forbidden = RBAC, unreachable, ...); README, Kubernetes sources.",
    "Expiring Secrets by namespace": "Certificates in Kubernetes Secrets inside warning_days, counted per namespace, most first: who has to renew.",
    "Certificate details": "Subject, issuer, serial and source of each certificate (certificate_info), for finding who owns it.",
    "Exporter up": "Whether Prometheus can scrape each homelab-monitor instance (up); 0 means every drift, certificate and backup alert is silent.",
    "Monitors": "Monitors (terraform_state, certificate_expiry, backup_validation, health checks...) each instance runs.",
    "Failing monitors": "Monitors whose last collection failed as a whole; their values are the last good ones (HomelabMonitorCollectorFailing).",
    "Failing targets": "Targets (state files, remote states, certificate sources, backup sources) that failed to read at the last collection (HomelabMonitorTargetsFailing).",
    "Collection duration": "How long each monitor's last collection took; scrapes never wait for it (values are cached per check_interval).",
    "Age of served values (cached for check_interval)": "Age of the values each monitor serves; it should stay below its check_interval plus one collection.",
    "Collections per minute": "Collections each monitor runs per minute, driven by scrapes and its check_interval.",
    "Stale monitors": "1 when a monitor serves values older than it should (a collection failed or is late).",
    "Build": "Version, commit and Rust version of each running homelab-monitor (homelab_monitor_build_info).",
    "Unreadable states": "State files or remote states that could not be read at the last collection (TerraformStateUnreadable after 15 minutes).",
    "Certificates inside warning_days": "Certificates expiring within the configured warning_days (CertificateExpiringWarning).",
    "Certificates by time left (10 soonest)": "The ten certificates that expire first, coloured against warning_days / critical_days.",
    "Backups by age": "Age of each source's last successful backup, coloured against its own max_age.",
    "Host CPU busy": "Share of CPU time not idle per host, from node_exporter (the $node variable).",
    "Host memory available": "Share of memory available per host, from node_exporter.",
    "Host disk free (least free filesystem)": "Free space of each host's fullest real filesystem (tmpfs, overlay and squashfs excluded), from node_exporter.",
    "Health checks (0 = failing)": "Each configured health check (http, tcp, dns, disk, file_age, command) and whether it passed at the last collection.",
    "Health check duration": "How long each health check took; HealthCheckSlow fires when one stays above its threshold.",
    "Drifted instances": "Resource instances whose real object differs from the state, from the drift reports (TerraformStateDrift).",
    "Unapproved changes": "Resource instances added, removed or changed since the approved baseline (TerraformUnapprovedChanges).",
    "Tainted + deposed": "Tainted objects (replaced on the next apply) plus deposed ones (an unfinished create_before_destroy).",
    "Drift per state": "Drifted instances per state file over time.",
    "Serial per state": "The state serial per state file; it only grows, and a drop means an older state was restored (TerraformStateSerialWentBackwards).",
    "Pending changes by action": "Changes the latest plan would make, by action (create, update, delete, replace...) plus root output changes.",
    "Check results by status": "Terraform check blocks, preconditions and postconditions recorded in the states, by status (pass, fail, error, unknown).",
    "Resource instances by type (top 15)": "The fifteen resource types with the most instances across the selected states.",
}


def describe(board):
    """Give each panel its description from DESCRIPTIONS; fail when one has none."""
    missing = []
    for p in board["panels"]:
        if p.get("type") == "row":
            continue
        if not p.get("description"):
            text = DESCRIPTIONS.get((board["uid"], p["title"])) or DESCRIPTIONS.get(p["title"])
            if not text and p["title"].startswith("Shrank below"):
                text = "Sources whose newest backup is smaller than the BackupShrank threshold of the one before."
            if text:
                p["description"] = text
            else:
                missing.append(p["title"])
    if missing:
        print(f"error: {board['uid']}: panel(s) without a description: {missing}; add them to DESCRIPTIONS",
              file=sys.stderr)
        sys.exit(1)
    return board


def main():
    root = Path(OPTS.out) if OPTS.out else ROOT / "dashboards"
    check = OPTS.check
    stale = []
    for name, build in DASHBOARDS.items():
        board = describe(build())
        text = json.dumps(board, indent=2, sort_keys=False) + "\n"
        path = root / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            root.mkdir(exist_ok=True)
            path.write_text(text)
    if stale:
        print("dashboards out of date (run python3 scripts/gen-dashboards.py):", ", ".join(stale))
        sys.exit(1)


if __name__ == "__main__":
    main()
