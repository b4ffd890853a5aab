"""``version``, ``info`` (``system info``) and ``system df``: docker's text, templates and JSON.

The documents come from the engine (engine/sysinfo.py, engine/diskusage.py), the same that the
REST API returns for ``/version``, ``/info`` and ``/system/df``; this module only adds the client
side and renders them as docker's CLI does (docker/cli cli/command/system).
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any

from dockyard.cli.parser import CommandParser

if TYPE_CHECKING:
    from dockyard.cli.main import Globals
    from dockyard.engine.diskusage import DiskUsage
    from dockyard.engine.sysinfo import BuildInfo

# docker exits 64 when a --format template of version or info does not parse.
EXIT_BAD_TEMPLATE = 64
CONTEXT = "default"


def _ansic(ts: float) -> str:
    """Go's time.ANSIC ("Mon Jan  2 15:04:05 2006"), as docker prints build times."""
    return time.strftime("%a %b %e %H:%M:%S %Y", time.gmtime(ts)) if ts else ""


def _client(b: BuildInfo) -> dict[str, Any]:
    """docker's clientVersion (its JSON names; empty fields left out, as ``omitempty`` does)."""
    from dockyard.engine.sysinfo import API_VERSION

    doc = {"Version": b.version, "ApiVersion": API_VERSION, "DefaultAPIVersion": API_VERSION,
           "GitCommit": b.git_commit, "GoVersion": b.python_version, "Os": b.os,
           "Arch": b.arch, "BuildTime": _ansic(b.build_time)}
    return {**{k: v for k, v in doc.items() if v}, "Context": CONTEXT}


def _render_format(fmt: str, data: dict[str, Any], go_type: str) -> int:
    """``--format``: ``json`` as the document itself (docker's field order), else a Go template
    run over it. A template that does not parse exits 64, as docker's does."""
    from dockyard.cli.template import Struct, TemplateError, parse_template

    if fmt == "json":
        sys.stdout.write(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n")
        return 0
    try:
        tmpl = parse_template(fmt)
    except TemplateError as e:
        sys.stderr.write(f"{e.message}\n")
        return EXIT_BAD_TEMPLATE
    out = tmpl.render(Struct(data, go_type=go_type))
    from dockyard.cli.formatter import tabwrite_text

    sys.stdout.write(tabwrite_text(out + "\n", minwidth=20, padding=1))
    return 0


# --- version ------------------------------------------------------------------------------------


def cmd_version(g: Globals, argv: list[str], command: str = "version") -> int:
    p = CommandParser(command, "[OPTIONS]", "Show the Dockyard version information")
    p.add_argument("-f", "--format", default="", help="Format output using a custom template")
    a = p.parse_args(argv)
    from dockyard.engine.sysinfo import build_info, version

    b = build_info()
    server = version(b)
    for comp in server["Components"]:
        if comp["Name"] == "Engine" and comp["Details"].get("BuildTime"):
            comp["Details"]["BuildTime"] = _ansic(b.build_time)  # the CLI reformats it
    data = {"Client": _client(b), "Server": server}
    if a.format:
        return _render_format(a.format, data, "system.versionInfo")
    from dockyard.cli.formatter import tabwrite_text

    sys.stdout.write(tabwrite_text(_version_text(data) + "\n", minwidth=20, padding=1))
    return 0


def _version_text(data: dict[str, Any]) -> str:
    """docker's defaultVersionTemplate, written out (tab-separated, for the tab writer)."""
    c, s = data["Client"], data["Server"]
    lines = ["Client:",
             f" Version:\t{c['Version']}",
             f" API version:\t{c['ApiVersion']}",
             f" Go version:\t{c['GoVersion']}",
             f" Git commit:\t{c.get('GitCommit') or 'unknown'}",
             f" Built:\t{c.get('BuildTime') or 'unknown'}",
             f" OS/Arch:\t{c['Os']}/{c['Arch']}",
             f" Context:\t{c['Context']}",
             "",
             f"Server: {s['Platform']['Name']}"]
    for comp in s["Components"]:
        d = comp["Details"]
        lines.append(f" {comp['Name']}:")
        if comp["Name"] == "Engine":
            lines += [f"  Version:\t{comp['Version']}",
                      f"  API version:\t{d['ApiVersion']} (minimum version {d['MinAPIVersion']})",
                      f"  Go version:\t{d['GoVersion']}",
                      f"  Git commit:\t{d.get('GitCommit') or 'unknown'}",
                      f"  Built:\t{d.get('BuildTime') or 'unknown'}",
                      f"  OS/Arch:\t{d['Os']}/{d['Arch']}",
                      f"  Experimental:\t{d['Experimental']}"]
        else:
            lines.append(f"  Version:\t{comp['Version']}")
            lines += [f"  {k}:\t{d[k] or 'unknown'}" for k in sorted(d)]
    return "\n".join(lines)


# --- info ---------------------------------------------------------------------------------------


def cmd_info(g: Globals, argv: list[str], command: str = "info") -> int:
    p = CommandParser(command, "[OPTIONS]", "Display system-wide information")
    p.add_argument("-f", "--format", default="", help="Format output using a custom template")
    a = p.parse_args(argv)
    from dockyard.cli.containers import service
    from dockyard.engine.sysinfo import build_info, info

    build = build_info()
    doc = info(service(g), debug=g.debug, build=build)
    client = {"Debug": g.debug, **_client(build), "Plugins": [], "Warnings": None}
    if a.format:
        return _render_format(a.format, {**doc, "ClientInfo": client}, "system.dockerInfo")
    sys.stdout.write(_info_text(doc, client, g.debug))
    return 0


def _info_text(i: dict[str, Any], client: dict[str, Any], client_debug: bool) -> str:
    """docker's prettyPrintInfo: ``label value`` lines (Go's Println), one space apart."""
    from dockyard.cli.units import bytes_size

    out: list[str] = []

    def line(label: str, v: Any) -> None:
        text = str(v).lower() if isinstance(v, bool) else str(v)
        out.append(f"{label} {text}")

    def line_if(label: str, v: str) -> None:
        if v:
            line(label, v)

    out.append("Client:")
    line_if(" Version:   ", client.get("Version", ""))
    line(" Context:   ", client["Context"])
    line(" Debug Mode:", client["Debug"])
    out += ["", "Server:"]
    line(" Containers:", i["Containers"])
    line("  Running:", i["ContainersRunning"])
    line("  Paused:", i["ContainersPaused"])
    line("  Stopped:", i["ContainersStopped"])
    line(" Images:", i["Images"])
    line_if(" Server Version:", i["ServerVersion"])
    line_if(" Storage Driver:", i["Driver"])
    out += [f"  {k}: {v}" for k, v in i["DriverStatus"]]
    line_if(" Logging Driver:", i["LoggingDriver"])
    line_if(" Cgroup Driver:", i["CgroupDriver"])
    line_if(" Cgroup Version:", i["CgroupVersion"])
    out.append(" Plugins:")
    line("  Volume:", " ".join(i["Plugins"]["Volume"]))
    line("  Network:", " ".join(i["Plugins"]["Network"]))
    line("  Log:", " ".join(i["Plugins"]["Log"]))
    line(" Swarm:", i["Swarm"]["LocalNodeState"])
    if i["Runtimes"]:
        line(" Runtimes:", " ".join(i["Runtimes"]))
        line(" Default Runtime:", i["DefaultRuntime"])
    if i["SecurityOptions"]:
        out.append(" Security Options:")
        for opt in i["SecurityOptions"]:
            kv = dict(part.partition("=")[::2] for part in opt.split(","))
            out.append(f"  {kv.get('name', opt)}")
            if kv.get("profile"):
                line("   Profile:", kv["profile"])
    line_if(" Kernel Version:", i["KernelVersion"])
    line_if(" Operating System:", i["OperatingSystem"])
    line_if(" OSType:", i["OSType"])
    line_if(" Architecture:", i["Architecture"])
    line(" CPUs:", i["NCPU"])
    line(" Total Memory:", bytes_size(i["MemTotal"]))
    line_if(" Name:", i["Name"])
    line_if(" ID:", i["ID"])
    line(" Docker Root Dir:", i["DockerRootDir"])
    line(" Debug Mode:", i["Debug"])
    if i["Debug"] or client_debug:
        line("  File Descriptors:", i["NFd"])
        line("  Goroutines:", i["NGoroutines"])
        line("  System Time:", i["SystemTime"])
        line("  EventsListeners:", i["NEventsListener"])
    line_if(" HTTP Proxy:", i["HttpProxy"])
    line_if(" HTTPS Proxy:", i["HttpsProxy"])
    line_if(" No Proxy:", i["NoProxy"])
    if i["Labels"]:
        out.append(" Labels:")
        out += [f"  {label}" for label in i["Labels"]]
    line(" Experimental:", i["ExperimentalBuild"])
    reg = i["RegistryConfig"]
    insecure = [n for n, c in reg["IndexConfigs"].items() if not c["Secure"]]
    if insecure or reg["InsecureRegistryCIDRs"]:
        out.append(" Insecure Registries:")
        out += [f"  {x}" for x in (*insecure, *reg["InsecureRegistryCIDRs"])]
    if reg["Mirrors"]:
        out.append(" Registry Mirrors:")
        out += [f"  {m}" for m in reg["Mirrors"]]
    line(" Live Restore Enabled:", i["LiveRestoreEnabled"])
    return "\n".join(out) + "\n\n"


# --- system df ----------------------------------------------------------------------------------

_DF_HEADERS = {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE",
               "Reclaimable": "RECLAIMABLE"}
_DF_TABLE = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"
_DF_IMAGES_TABLE = ("table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t"
                    "{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}")
_DF_CONTAINERS_TABLE = ("table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.LocalVolumes}}\t{{.Size}}\t"
                        "{{.RunningFor}}\t{{.Status}}\t{{.Names}}")
_DF_VOLUMES_TABLE = "table {{.Name}}\t{{.Links}}\t{{.Size}}"
_DF_CACHE_TABLE = ("table {{.ID}}\t{{.CacheType}}\t{{.Size}}\t{{.CreatedSince}}\t"
                   "{{.LastUsedSince}}\t{{.UsageCount}}\t{{.Shared}}")
_VOLUME_HEADERS = {"Name": "VOLUME NAME", "Links": "LINKS", "Size": "SIZE"}
_CACHE_HEADERS = {"ID": "CACHE ID", "CacheType": "CACHE TYPE", "Size": "SIZE",
                  "CreatedSince": "CREATED", "LastUsedSince": "LAST USED",
                  "UsageCount": "USAGE", "Shared": "SHARED"}


def cmd_df(g: Globals, argv: list[str], command: str = "system df") -> int:
    p = CommandParser(command, "[OPTIONS]", "Show dockyard disk usage")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="Show detailed information on space usage")
    p.add_argument("--format", default="", help="Format output using a custom template")
    a = p.parse_args(argv)
    from dockyard.cli.containers import service
    from dockyard.engine.diskusage import disk_usage

    svc = service(g)
    du = disk_usage(svc)
    if a.verbose:
        sys.stdout.write(_df_verbose(du, a.format or "table"))
        return 0
    from dockyard.cli.formatter import render_rows

    sys.stdout.write(render_rows(a.format, _df_rows(du), default_table=_DF_TABLE,
                                 headers=_DF_HEADERS, go_type="*formatter.diskUsageContext"))
    return 0


def _reclaimable(reclaimable: int, total: int) -> str:
    from dockyard.cli.units import human_size

    if total > 0:
        return f"{human_size(reclaimable)} ({reclaimable * 100 // total}%)"
    return human_size(reclaimable)


def _df_rows(du: DiskUsage) -> list[dict[str, Any]]:
    from dockyard.cli.units import human_size

    return [
        {"Type": "Images", "TotalCount": str(len(du.images)), "Active": str(du.images_active),
         "Size": human_size(du.layers_size),
         "Reclaimable": _reclaimable(du.images_reclaimable, du.layers_size)},
        {"Type": "Containers", "TotalCount": str(len(du.containers)),
         "Active": str(sum(1 for c in du.containers if c.active)),
         "Size": human_size(du.containers_size),
         "Reclaimable": _reclaimable(du.containers_reclaimable, du.containers_size)},
        {"Type": "Local Volumes", "TotalCount": str(len(du.volumes)),
         "Active": str(du.volumes_active), "Size": human_size(du.volumes_size),
         "Reclaimable": _reclaimable(du.volumes_reclaimable, du.volumes_size)},
        {"Type": "Build Cache", "TotalCount": "0", "Active": "0", "Size": "0B",
         "Reclaimable": "0B"},
    ]


def size_text(size_rw: int, size_root_fs: int) -> str:
    """docker's SIZE of a container: "12B (virtual 4.26MB)", or "12B" without a virtual size."""
    from dockyard.cli.units import human_size_with_precision

    rw = human_size_with_precision(size_rw, 3)
    if size_root_fs > 0:
        return f"{rw} (virtual {human_size_with_precision(size_root_fs, 3)})"
    return rw


def _df_image_rows(du: DiskUsage, trunc: bool) -> list[dict[str, Any]]:
    from dockyard.cli.images import _image_rows
    from dockyard.cli.units import human_size_with_precision

    rows = []
    for i in du.images:
        row = _image_rows([i.record], no_trunc=not trunc, digests=False)[0]  # the first name
        row.update(Size=human_size_with_precision(i.size, 3),
                   SharedSize=human_size_with_precision(i.shared_size, 3),
                   UniqueSize=human_size_with_precision(i.size - i.shared_size, 3),
                   Containers=str(i.containers))
        rows.append(row)
    return rows


def _df_container_rows(du: DiskUsage, trunc: bool) -> list[dict[str, Any]]:
    from dockyard.cli.containers import _ps_row

    # docker leaves the virtual size out here
    return [{**_ps_row(u.container, not trunc), "Size": size_text(u.size_rw, 0)}
            for u in du.containers]


def _df_volume_rows(du: DiskUsage) -> list[dict[str, Any]]:
    """docker's volumeContext of ``system df -v``."""
    from dockyard.cli.units import human_size

    return [{"Name": u.volume.name, "Driver": u.volume.driver, "Scope": "local",
             "Mountpoint": u.volume.mountpoint,
             "Labels": ",".join(f"{k}={v}" for k, v in sorted(u.volume.labels.items())),
             "Links": str(u.ref_count), "Size": human_size(u.size)} for u in du.volumes]


def _df_verbose(du: DiskUsage, fmt: str) -> str:
    """``system df -v``: a table per kind of object, or one template run over all of them."""
    from dockyard.cli.containers import _PS_HEADERS
    from dockyard.cli.formatter import render_rows, template_string
    from dockyard.cli.images import _IMAGES_HEADERS
    from dockyard.cli.template import Struct, parse_template
    from dockyard.cli.units import human_size

    table = fmt == "table"
    images = _df_image_rows(du, trunc=table)
    containers = _df_container_rows(du, trunc=table)
    volumes = _df_volume_rows(du)
    if not table:
        tmpl = parse_template(template_string(fmt))
        doc = {"Images": [Struct(r, go_type="*formatter.imageContext") for r in images],
               "Containers": [Struct(r, go_type="*formatter.ContainerContext")
                              for r in containers],
               "Volumes": [Struct(r, go_type="*formatter.volumeContext") for r in volumes],
               "BuildCache": []}
        text = tmpl.render(doc)
        return text if text.endswith("\n") else text + "\n"
    return "".join([
        "Images space usage:\n\n",
        render_rows(None, images, default_table=_DF_IMAGES_TABLE, headers=_IMAGES_HEADERS),
        "\nContainers space usage:\n\n",
        render_rows(None, containers, default_table=_DF_CONTAINERS_TABLE, headers=_PS_HEADERS),
        "\nLocal Volumes space usage:\n\n",
        render_rows(None, volumes, default_table=_DF_VOLUMES_TABLE, headers=_VOLUME_HEADERS),
        f"\nBuild cache usage: {human_size(0)}\n\n",
        render_rows(None, [], default_table=_DF_CACHE_TABLE, headers=_CACHE_HEADERS),
    ])
