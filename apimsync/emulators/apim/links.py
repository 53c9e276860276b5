"""Tags, products and their links to APIs, and apisByTags (display names in name, ids in id)."""

from __future__ import annotations

from typing import Any

from apimsync.emulators._server import Request, Response
from apimsync.emulators.apim.common import (
    API_ID,
    TYPES,
    ArmError,
    Service,
    not_found,
)


class Links(Service):
    def _tag_body(self, tag_id: str) -> dict[str, Any]:
        return {"id": self.arm_id("tags", tag_id), "type": TYPES["tags"], "name": tag_id,
                "properties": {"displayName": self._state.tags[tag_id]["displayName"]}}

    def _tag(self, request: Request, tag_id: str) -> Response:
        tags = self._state.tags
        if request.method == "GET":
            if tag_id not in tags:
                raise not_found("Tag")
            return Response.json(200, self._tag_body(tag_id), {"ETag": tags[tag_id]["etag"]})
        if request.method == "PUT":
            props = (request.json() or {}).get("properties") or {}
            display = props.get("displayName")
            if not API_ID.match(tag_id) or len(tag_id) > 80:
                raise ArmError(400, "ValidationError", f"Tag identifier '{tag_id}' is invalid (1-80 characters, "
                                                       "none of *#&+:<>?).")
            if not isinstance(display, str) or not 1 <= len(display) <= 160:
                raise ArmError(400, "ValidationError", "Property 'displayName' is required (1-160 characters).")
            created = tag_id not in tags
            tags[tag_id] = {"displayName": display, "etag": self._etag()}
            self._save()
            return Response.json(201 if created else 200, self._tag_body(tag_id), {"ETag": tags[tag_id]["etag"]})
        if request.method == "DELETE":
            tags.pop(tag_id, None)
            for links in self._state.api_tags.values():
                if tag_id in links:
                    links.remove(tag_id)
            self._save()
            return Response(200)
        raise ArmError(405, "MethodNotAllowed", "Method not allowed on a tag.")

    def _api_tags(self, request: Request, api_id: str, tag_id: str | None) -> Response:
        base = self._base(api_id)
        links = self._state.api_tags.setdefault(base, [])
        if tag_id is None:
            if request.method != "GET":
                raise ArmError(405, "MethodNotAllowed", "Method not allowed.")
            return self._list(request, ["apis", api_id, "tags"], [self._tag_body(t) for t in links])
        if tag_id not in self._state.tags:
            raise not_found("Tag")
        if request.method == "PUT":
            created = tag_id not in links
            if created:
                links.append(tag_id)
                self._save()
            return Response.json(201 if created else 200, self._tag_body(tag_id))
        if request.method == "GET":
            if tag_id not in links:
                raise not_found("Tag link")
            return Response.json(200, self._tag_body(tag_id))
        if request.method == "DELETE":
            if tag_id in links:
                links.remove(tag_id)
                self._save()
            return Response(200)
        raise ArmError(405, "MethodNotAllowed", "Method not allowed.")

    def _apis_by_tags(self) -> list[dict[str, Any]]:
        out = []
        for base, tags in sorted(self._state.api_tags.items()):
            if base not in self._state.apis:
                continue
            props = self._api_body(base)["properties"]
            for tag in tags:
                # ApiManagementListApisByTags.json: ids in the short form, *display names* in "name"
                out.append({"tag": {"id": f"/tags/{tag}", "name": self._state.tags[tag]["displayName"]},
                            "api": {"id": f"/apis/{base}", "name": props["displayName"],
                                    **{k: props.get(k) for k in ("apiRevision", "serviceUrl", "path", "isCurrent")}}})
        return out

    def _product_body(self, pid: str) -> dict[str, Any]:
        return {"id": self.arm_id("products", pid), "type": TYPES["products"], "name": pid,
                "properties": self._state.products[pid]}

    def _product(self, request: Request, pid: str) -> Response:
        products = self._state.products
        if request.method == "GET":
            if pid not in products:
                raise not_found("Product")
            return Response.json(200, self._product_body(pid))
        if request.method == "PUT":
            props = (request.json() or {}).get("properties") or {}
            created = pid not in products
            products[pid] = {"displayName": props.get("displayName") or pid, "state": props.get("state", "published"),
                             "subscriptionRequired": props.get("subscriptionRequired", True),
                             "description": props.get("description", "")}
            self._state.product_apis.setdefault(pid, [])
            self._save()
            return Response.json(201 if created else 200, self._product_body(pid))
        raise ArmError(405, "MethodNotAllowed", "Method not allowed on a product.")

    def _product_apis(self, request: Request, pid: str, api_id: str | None) -> Response:
        if pid not in self._state.products:
            raise not_found("Product")
        links = self._state.product_apis.setdefault(pid, [])
        if api_id is None:
            return self._list(request, ["products", pid, "apis"],
                              [self._api_body(a) for a in links if a in self._state.apis])
        base = self._base(api_id)
        if request.method == "PUT":
            created = base not in links
            if created:
                links.append(base)
                self._save()
            return Response.json(201 if created else 200, self._api_body(base))
        if request.method == "DELETE":
            if base in links:
                links.remove(base)
                self._save()
            return Response(200)
        raise ArmError(405, "MethodNotAllowed", "Method not allowed.")
