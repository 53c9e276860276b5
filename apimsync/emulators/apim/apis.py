"""APIs: import and settings (with APIM's import rules), revisions, releases, operations, the list."""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Any
from urllib.parse import quote, unquote

from apimsync.emulators._server import Request, Response
from apimsync.emulators.apim.common import (
    API_ID,
    TYPES,
    ArmError,
    Service,
    not_found,
)
from apimsync.emulators.apim.state import now
from apimsync.emulators.apim_import import ImportedOperation, ImportRejected, import_spec, reimport_operations

# the properties an API PUT may set (ApiCreateOrUpdateProperties, definitions.json)
_API_PROPS = ("displayName", "description", "serviceUrl", "path", "protocols", "subscriptionRequired",
              "apiRevisionDescription", "apiVersion", "apiVersionSetId", "subscriptionKeyParameterNames",
              "authenticationSettings", "contact", "license", "termsOfServiceUrl", "sourceApiId")


class Apis(Service):
    def _list_apis(self) -> list[dict[str, Any]]:
        """Every revision of every API, as Azure lists them (non-current ones as ``<id>;rev=N``, isCurrent false:
        api-management-developer-portal filters with ``isCurrent eq true`` for that reason, issues #645/#737)."""
        out = []
        for api_id in sorted(self._state.apis):
            entry = self._state.apis[api_id]
            out.append(self._api_body(api_id))
            out += [self._api_body(api_id, rev) for rev in sorted(entry["revisions"], key=int)
                    if rev != entry["current"]]
        return out

    @staticmethod
    def _split(api_id: str) -> tuple[str, str | None]:
        if ";rev=" in api_id:
            base, rev = api_id.split(";rev=", 1)
            return base, rev
        return api_id, None

    def _base(self, api_id: str) -> str:
        base, _ = self._split(api_id)
        if base not in self._state.apis:
            raise not_found("API")
        return base

    def _revision(self, api_id: str) -> dict[str, Any]:
        base, rev = self._split(api_id)
        entry = self._state.apis.get(base)
        if entry is None:
            raise not_found("API")
        rev = rev or entry["current"]
        if rev not in entry["revisions"]:
            raise not_found("API revision")
        return entry["revisions"][rev]

    def _api_body(self, base: str, rev: str | None = None) -> dict[str, Any]:
        entry = self._state.apis[base]
        rev = rev or entry["current"]
        r = entry["revisions"][rev]
        api_id = base if rev == entry["current"] else f"{base};rev={rev}"
        props = {**r["props"], "apiRevision": rev, "isCurrent": rev == entry["current"], "isOnline": True,
                 "type": "http", "provisioningState": "Succeeded"}
        return {"id": self.arm_id("apis", api_id), "type": TYPES["apis"], "name": api_id, "properties": props}

    def _check_if_match(self, request: Request, etag: str | None, required: bool) -> None:
        if_match = request.headers.get("if-match")
        if if_match is None:
            if required:
                raise ArmError(400, "ValidationError", "If-Match header is required.")
            return
        if if_match != "*" and if_match != etag:
            raise ArmError(412, "PreconditionFailed", "The entity was modified since it was read (ETag mismatch).")

    def _api(self, request: Request, api_id: str, lro_fail: bool) -> Response:
        m = request.method
        base, rev = self._split(api_id)
        entry = self._state.apis.get(base)
        if m in ("GET", "HEAD"):
            if request.query.get("asyncId"):
                return self._poll(request.query["asyncId"])
            if entry is None or (rev and rev not in entry["revisions"]):
                raise not_found("API")
            r = entry["revisions"][rev or entry["current"]]
            body = self._api_body(base, rev)
            if m == "HEAD":
                return Response(200, b"", {"ETag": r["etag"]})
            return Response.json(200, body, {"ETag": r["etag"]})
        if m == "DELETE":
            if entry is None:
                return Response(204)
            self._busy(base)
            current = entry["revisions"][rev or entry["current"]]
            self._check_if_match(request, current["etag"], required=True)

            def finish() -> None:
                if rev and rev != entry["current"]:
                    entry["revisions"].pop(rev, None)
                else:
                    self._state.apis.pop(base, None)
                    self._state.api_tags.pop(base, None)
                    for links in self._state.product_apis.values():
                        if base in links:
                            links.remove(base)

            return self._start_lro(f"apis/{quote(api_id, safe='')}", 204, finish, lro_fail, base, body=None,
                                   status=202)
        if m == "PATCH":
            if entry is None:
                raise not_found("API")
            self._busy(base)
            r = entry["revisions"][rev or entry["current"]]
            self._check_if_match(request, r["etag"], required=True)
            props = (request.json() or {}).get("properties") or {}
            self._validate_props(props, partial=True, base=base)
            r["props"].update({k: v for k, v in props.items() if k in _API_PROPS})
            r["etag"] = self._etag()
            self._save()
            return Response.json(200, self._api_body(base, rev), {"ETag": r["etag"]})
        if m == "PUT":
            return self._put_api(request, base, rev, entry, lro_fail)
        raise ArmError(405, "MethodNotAllowed", f"{m} is not allowed on an API.")

    def _validate_props(self, props: dict[str, Any], *, partial: bool, base: str) -> None:
        if not API_ID.match(base) or len(base) > 256:
            raise ArmError(400, "ValidationError", f"API identifier '{base}' is invalid.")
        limits = {"displayName": (1, 300), "path": (0, 400), "serviceUrl": (0, 2000), "description": (0, 10**6),
                  "apiRevisionDescription": (0, 256)}  # definitions.json: ApiRevisionContract maxLength 256
        for key, (low, high) in limits.items():
            if key in props and props[key] is not None and not low <= len(str(props[key])) <= high:
                raise ArmError(400, "ValidationError", f"Property '{key}' must be {low}-{high} characters long.")
        if "path" in props and props["path"] is not None:
            props["path"] = str(props["path"]).strip("/")
            for other, entry in self._state.apis.items():
                if other != base and entry["revisions"][entry["current"]]["props"].get("path") == props["path"]:
                    raise ArmError(400, "ValidationError", f"Cannot create API '{base}' with the same Path "
                                                           f"'{props['path']}' as API '{other}' unless it's a part "
                                                           "of the same version set.")
        if not partial and not props.get("path") and props.get("path") != "":
            raise ArmError(400, "ValidationError", "Property 'path' is required.")

    def _put_api(self, request: Request, base: str, rev: str | None, entry: dict[str, Any] | None,
                 lro_fail: bool) -> Response:
        body = request.json() or {}
        props = dict(body.get("properties") or {})
        self._busy(base)  # also while the API's own create is still running
        if entry is not None:
            current = entry["revisions"][rev] if rev and rev in entry["revisions"] else entry["revisions"][
                entry["current"]]
            self._check_if_match(request, current["etag"], required=False)
        elif request.headers.get("if-match") not in (None, "*"):
            raise ArmError(412, "PreconditionFailed", "The API does not exist.")
        source: dict[str, Any] | None = None
        if rev is not None and (entry is None or rev not in entry["revisions"]):
            source_id = props.get("sourceApiId") or ""
            source_base = self._split(source_id.rsplit("/apis/", 1)[-1])[0] if source_id else base
            if entry is None or source_base != base:
                raise ArmError(400, "ValidationError", "A new revision needs sourceApiId pointing at its API.")
            source = entry["revisions"][entry["current"]]
            if props.get("path") not in (None, source["props"].get("path")):
                raise ArmError(400, "ValidationError", "Can't change property Path for non-current revision")
        fmt, value = props.pop("format", None), props.pop("value", None)
        imported = None
        if fmt is not None:
            try:
                imported = import_spec(value or "", fmt)
            except ImportRejected as exc:
                raise ArmError(400, "ValidationError", "One or more fields contain incorrect values:",
                               exc.envelope()["error"]["details"]) from None
            except ValueError as exc:
                raise ArmError(400, "ValidationError", str(exc)) from None
        base_props = dict((source or (entry["revisions"][rev or entry["current"]] if entry and (
            rev is None or rev in entry["revisions"]) else {"props": {}}))["props"])
        new_props = {**base_props}
        if imported is not None:
            new_props.update({k: v for k, v in (("displayName", imported.title), ("description", imported.description),
                                                ("serviceUrl", imported.service_url)) if v})
        new_props.update({k: v for k, v in props.items() if k in _API_PROPS and v is not None})
        if source is not None:
            # "Can't change property Name for non-current revision" (azure-powershell#9270; Description:
            # apiops#285): a new revision keeps its API's name and description, whatever the spec says
            for key, label in (("displayName", "Name"), ("description", "Description")):
                if new_props.get(key) != source["props"].get(key):
                    raise ArmError(400, "ValidationError", f"Can't change property {label} for non-current revision")
        new_props.setdefault("displayName", base)
        new_props.setdefault("protocols", ["https"])
        new_props.setdefault("subscriptionRequired", True)
        self._validate_props(new_props if rev is None or entry is None else {**new_props, "path": None},
                             partial=entry is not None, base=base)
        existing_ops = [ImportedOperation(**o) for o in (
            (source or (entry["revisions"].get(rev or entry["current"]) if entry else None) or {}).get(
                "operations", []))]
        if imported is not None:
            ops, _deleted = reimport_operations(existing_ops, imported.operations)
        else:
            ops = existing_ops
        created = entry is None or (rev is not None and rev not in entry["revisions"])
        etag = self._etag()
        target_rev = rev or (entry["current"] if entry else "1")
        policy = (source or {}).get("policy")

        def finish() -> None:
            e = self._state.apis.setdefault(base, {"current": target_rev, "revisions": {}, "releases": {}})
            old = e["revisions"].get(target_rev, {})
            e["revisions"][target_rev] = {"props": new_props, "etag": etag, "operations": [asdict(o) for o in ops],
                                          "policy": old.get("policy", policy), "created": old.get("created") or now(),
                                          "updated": now()}

        pending = {"id": self.arm_id("apis", base if rev is None else f"{base};rev={rev}"), "type": TYPES["apis"],
                   "name": base if rev is None else f"{base};rev={rev}",
                   "properties": {**new_props, "apiRevision": target_rev, "isCurrent": target_rev == (
                       entry["current"] if entry else "1"), "provisioningState": "InProgress"}}
        code = 201 if created else 200
        return self._start_lro(f"apis/{quote(str(pending['name']), safe='')}", code, finish, lro_fail,
                               base, body=pending, status=201 if created else 200, etag=etag,
                               spec_bytes=len(str(value or "").encode("utf-8")))

    def _release(self, request: Request, api_id: str, release_id: str) -> Response:
        base = self._base(api_id)
        self._busy(base)
        props = (request.json() or {}).get("properties") or {}
        target = str(props.get("apiId") or "")
        match = re.search(r";rev=(\d+)$", unquote(target))
        entry = self._state.apis[base]
        rev = match.group(1) if match else entry["current"]
        if rev not in entry["revisions"]:
            raise ArmError(400, "ValidationError", f"Revision {rev} of API '{base}' does not exist.")
        created = release_id not in entry["releases"]
        entry["current"] = rev
        entry["releases"][release_id] = {"apiId": self.arm_id("apis", base), "notes": props.get("notes"),
                                         "createdDateTime": now(), "updatedDateTime": now()}
        for r in entry["revisions"].values():
            r["etag"] = self._etag()
        self._save()
        return Response.json(201 if created else 200, {
            "id": self.arm_id("apis", base, "releases", release_id), "type": TYPES["releases"],
            "name": release_id, "properties": entry["releases"][release_id]})

    def _revision_list(self, base: str) -> list[dict[str, Any]]:
        """ApiRevisionContract items (ApiManagementListApiRevisions.json): the revision's id, number, times, state;
        ``description`` is its apiRevisionDescription (definitions.json), present when set."""
        entry = self._state.apis[base]
        out = []
        for rev in sorted(entry["revisions"], key=int):
            r = entry["revisions"][rev]
            item = {"apiId": self.arm_id("apis", f"{base};rev={rev}"), "apiRevision": rev,
                    "createdDateTime": r.get("created") or now(), "updatedDateTime": r.get("updated") or now(),
                    "isOnline": True, "isCurrent": rev == entry["current"]}
            if r["props"].get("apiRevisionDescription"):
                item["description"] = r["props"]["apiRevisionDescription"]
            out.append(item)
        return out

    def _operation_body(self, api_id: str, op: dict[str, Any]) -> dict[str, Any]:
        return {"id": self.arm_id("apis", api_id, "operations", op["name"]), "type": TYPES["operations"],
                "name": op["name"], "properties": {"displayName": op["display_name"], "method": op["method"],
                                                   "urlTemplate": op["url_template"],
                                                   "description": op["description"], "templateParameters": [],
                                                   "responses": []}}
