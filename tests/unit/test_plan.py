"""The planner, as pure logic: decisions, reasons, and the safety properties (hypothesis)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from apimsync.changes import Action, Failure, Skip
from apimsync.model import ActualApi, ApiSettingsView, DesiredApi, Marker
from apimsync.planner import make_plan

POLICY = "<policies><inbound><base /></inbound><backend><base /></backend><outbound><base /></outbound></policies>"


def desired(name: str, ws: str = "w1", spec: str = '{"openapi":"3.0.3"}', **kw: object) -> DesiredApi:
    view = ApiSettingsView(path=f"serving/{name}", display_name=name, description="d",
                           service_url=f"https://h/serving-endpoints/{name}", subscription_required=True)
    return DesiredApi(api_id=f"dbx-{name}", workspace=ws, endpoint=name, settings=view, spec_json=spec,
                      policy_xml=POLICY, **kw)  # type: ignore[arg-type]


def applied(d: DesiredApi) -> ActualApi:
    """What APIM holds after apimsync wrote ``d``."""
    return ActualApi(api_id=d.api_id, settings=d.settings, revision_description=str(d.marker),
                     policy_xml=d.policy_xml, products=frozenset(d.products), tags=frozenset(d.tags))


def foreign(api_id: str, path: str | None = None) -> ActualApi:
    view = ApiSettingsView(path=path or api_id, display_name=api_id, description="", service_url="",
                           subscription_required=True)
    return ActualApi(api_id=api_id, settings=view, revision_description="hand made")


def plan_of(des, act, **kw):  # type: ignore[no-untyped-def]
    return make_plan("svc", des, act, workspaces=["w1", "w2"], **kw)


def actions(plan) -> dict[str, Action]:  # type: ignore[no-untyped-def]
    return {c.api_id: c.action for c in plan.changes}


def test_new_endpoint_is_created_with_two_writes() -> None:
    plan = plan_of([desired("a")], [])
    (change,) = plan.changes
    assert change.action is Action.CREATE
    assert tuple(map(str, change.writes)) == ("api", "policy")


def test_unchanged_api_is_a_noop_with_no_writes() -> None:
    d = desired("a")
    plan = plan_of([d], [applied(d)])
    assert actions(plan) == {"dbx-a": Action.NOOP}
    assert not plan.has_changes


def test_spec_change_updates_with_reason() -> None:
    old = desired("a")
    new = desired("a", spec='{"openapi":"3.0.3","x":1}')
    (change,) = plan_of([new], [applied(old)]).changes
    assert change.action is Action.UPDATE
    assert change.reasons == ("spec changed",)
    assert tuple(map(str, change.writes)) == ("api",)


def test_settings_change_versus_drift() -> None:
    d = desired("a")
    # the user changed the display name template: settings changed
    renamed = replace(d, settings=replace(d.settings, display_name="A!"))
    (change,) = plan_of([renamed], [applied(d)]).changes
    assert change.reasons[0].startswith("settings changed: display_name")
    assert tuple(map(str, change.writes)) == ("api-settings",)
    # someone edited the display name in the portal: drift, repaired
    edited = replace(applied(d), settings=replace(d.settings, display_name="edited"))
    (change,) = plan_of([d], [edited]).changes
    assert change.reasons == ("drift: display_name edited outside apimsync",)


def test_policy_drift_and_whitespace_insensitivity() -> None:
    d = desired("a")
    reformatted = replace(applied(d), policy_xml=POLICY.replace("><", ">\r\n\t<"))
    assert actions(plan_of([d], [reformatted])) == {"dbx-a": Action.NOOP}
    edited = replace(applied(d), policy_xml=POLICY.replace("<base />", "<base /><set-header name='x' />", 1))
    (change,) = plan_of([d], [edited]).changes
    assert tuple(map(str, change.writes)) == ("policy",)


def test_missing_product_and_tag_links_are_added() -> None:
    d = desired("a", products=("starter",), tags=("ml",))
    bare = replace(applied(d), products=frozenset(), tags=frozenset())
    (change,) = plan_of([d], [bare]).changes
    assert tuple(map(str, change.writes)) == ("product:starter", "tag:ml")


def test_unowned_api_with_same_id_or_path_is_a_conflict_not_touched() -> None:
    plan = plan_of([desired("a")], [foreign("dbx-a")])
    assert plan.changes == ()
    assert [f.stage for f in plan.failures] == ["conflict"]
    plan = plan_of([desired("b")], [foreign("other", path="serving/b")])
    assert "already used by API 'other'" in plan.failures[0].message


def test_prune_guards() -> None:
    keep = [desired(n) for n in "abcdefghij"]
    gone = desired("z")
    actual = [applied(d) for d in keep] + [applied(gone)]
    assert actions(plan_of(keep, actual))["dbx-z"] is Action.NOOP  # prune off
    assert actions(plan_of(keep, actual, prune=True))["dbx-z"] is Action.DELETE
    assert actions(plan_of(keep, actual, prune=True, protect=("dbx-z*",)))["dbx-z"] is Action.NOOP
    # deleting 6 of 11 owned APIs is over the 30% default share
    many_gone = plan_of(keep[:5], actual, prune=True)
    assert Action.DELETE not in actions(many_gone).values()
    assert "max_delete_fraction" in many_gone.withheld[0]
    forced = plan_of(keep[:5], actual, prune=True, force=True)
    assert list(actions(forced).values()).count(Action.DELETE) == 6
    # an empty source never deletes, even forced
    empty = plan_of([], actual, prune=True, force=True, empty_workspaces=["w1"])
    assert Action.DELETE not in actions(empty).values()
    assert "no endpoints" in empty.withheld[0]


def test_one_empty_workspace_keeps_its_apis_while_others_prune() -> None:
    a, b = desired("a", ws="w1"), desired("b", ws="w2")
    plan = plan_of([], [applied(a), applied(b)], prune=True, force=True, empty_workspaces=["w1"])
    assert actions(plan) == {"dbx-a": Action.NOOP, "dbx-b": Action.DELETE}
    assert "workspace w1" in plan.withheld[0]


def test_held_endpoints_keep_their_api() -> None:
    a, b = desired("a"), desired("b")
    actual = [applied(a), applied(b)]
    plan = plan_of([], actual, prune=True, force=True,
                   skipped=[Skip("w1", "a", "endpoint is not READY")],
                   failures=[Failure("w1", "b", "lint", "bad spec")])
    assert actions(plan) == {"dbx-a": Action.NOOP, "dbx-b": Action.NOOP}


def test_other_workspaces_apis_are_not_candidates() -> None:
    other = replace(desired("a"), workspace="elsewhere")
    plan = plan_of([], [applied(other)], prune=True, force=True)
    assert plan.changes == ()


def test_plan_renders_without_secrets_as_text_json_html() -> None:
    plan = plan_of([desired("a")], [], failures=[Failure("w1", "b", "lint", "bad", findings=("#/x: y",))])
    assert "+ dbx-a" in str(plan)
    assert "Plan: 1 to create" in str(plan)
    assert plan.to_dict()["changes"][0]["action"] == "create"
    assert "<table>" in plan._repr_html_()


def test_marker_round_trip() -> None:
    m = desired("a").marker
    assert Marker.parse(str(m)) == m
    assert Marker.parse("something else") is None


# -- properties -------------------------------------------------------------------------------------

names = st.lists(st.text("abcdef", min_size=1, max_size=3), unique=True, max_size=8)


@st.composite
def worlds(draw):  # type: ignore[no-untyped-def]
    """Random desired and actual states: some applied (maybe stale), some foreign, some gone."""
    want = draw(names)
    spec_version = {n: draw(st.integers(0, 2)) for n in want}
    des = [desired(n, ws=draw(st.sampled_from(["w1", "w2"])), spec=f'{{"v":{spec_version[n]}}}') for n in want]
    act = []
    for d in des:
        if draw(st.booleans()):
            act.append(applied(replace(d, spec_json='{"v":0}')))
    for n in draw(names):
        if draw(st.booleans()):
            act.append(foreign(f"f-{n}"))
        elif f"dbx-{n}" not in {a.api_id for a in act} and n not in want:
            act.append(applied(desired(n)))
    return des, act


@settings(max_examples=200, deadline=None)
@given(worlds(), st.booleans(), st.booleans(), st.floats(0, 1))
def test_properties(world, prune, force, fraction) -> None:  # type: ignore[no-untyped-def]
    des, act = world
    plan = plan_of(des, act, prune=prune, force=force, max_delete_fraction=fraction)
    ids = [c.api_id for c in plan.changes]
    assert len(ids) == len(set(ids)), "each API appears at most once"
    owned = {a.api_id for a in act if a.owned}
    for c in plan.changes:
        if c.action is not Action.CREATE:
            assert c.api_id in owned, "only owned APIs are updated or deleted"
    # nothing is deleted when the source is empty
    empty = plan_of([], act, prune=True, force=True, empty_workspaces=["w1", "w2"])
    assert all(c.action is not Action.DELETE for c in empty.changes)
    # apply then plan gives only no-ops
    after = {a.api_id: a for a in act}
    for c in plan.changes:
        if c.action in (Action.CREATE, Action.UPDATE):
            assert c.desired is not None
            after[c.api_id] = applied(c.desired)
        elif c.action is Action.DELETE:
            del after[c.api_id]
    again = plan_of(des, list(after.values()), prune=prune, force=force, max_delete_fraction=fraction)
    assert all(c.action in (Action.NOOP, Action.DELETE) for c in again.changes)
    if not plan.withheld:
        assert all(c.action is Action.NOOP for c in again.changes)


def test_a_name_cannot_forge_plan_lines_or_reach_the_terminal_raw() -> None:
    from apimsync.changes import Failure, Plan

    forged = "evil\n  + dbx-victim <- prod/victim (create): new endpoint\x1b[2J"
    text = str(Plan("svc", failures=(Failure("ws", forged, "fetch", "refused"),)))
    assert "\x1b" not in text and not any(line.startswith("  + dbx-victim") for line in text.splitlines())
    assert "\\n  + dbx-victim" in text and "\\x1b[2J" in text


def test_a_moved_source_with_the_same_spec_is_recorded_once() -> None:
    """The marker's source fingerprint lets a later run skip the spec fetch; a marker from before fingerprints
    (or a source that moved without changing the spec) is rewritten once, with the settings only."""
    old = desired("a")  # no source: a marker written before fingerprints
    new = desired("a", source="f00dfeed0001")
    (change,) = plan_of([new], [applied(old)]).changes
    assert change.reasons == ("spec source recorded",) and tuple(map(str, change.writes)) == ("api-settings",)
    assert not plan_of([new], [applied(new)]).has_changes
    reused = desired("a", spec=None, spec_hash=new.marker.spec, source="f00dfeed0001")
    assert not plan_of([reused], [applied(new)]).has_changes, "an unfetched spec is the published one"


def test_the_planner_decides_early_only_what_no_other_endpoint_bears_on_and_the_same_way() -> None:
    """Planner.offer gives the change of an API that can be applied before the plan is complete; the complete plan
    decides it identically, and decides the rest (collisions, a path held by another API) itself."""
    from apimsync.planner import Planner

    new, changed, twin_a, twin_b, blocked = (desired("new"), desired("changed", spec='{"openapi":"3.1.0"}'),
                                             desired("twin-a"), desired("twin-b"), desired("blocked"))
    twin_b = replace(twin_b, settings=replace(twin_b.settings, path=twin_a.settings.path))  # one path, two APIs
    listed = [applied(desired("changed")), foreign("hand-made", path=blocked.settings.path)]
    claims = [(d.api_id, d.settings.path.lower()) for d in (new, changed, twin_a, twin_b, blocked)]
    planner = Planner("svc", listed, claims)
    early = {d.api_id: planner.offer(d, lambda: listed) for d in (blocked, twin_b, changed, twin_a, new)}
    assert {k: v.action if v else None for k, v in early.items()} == {
        "dbx-new": Action.CREATE, "dbx-changed": Action.UPDATE, "dbx-twin-a": None, "dbx-twin-b": None,
        "dbx-blocked": None}
    plan = planner.complete(listed, workspaces=["w1"])
    by_id = {c.api_id: c for c in plan.changes}
    for api_id in ("dbx-new", "dbx-changed"):
        decided = early[api_id]
        assert decided is not None and by_id[api_id] == decided  # action, reasons and writes
    assert {f.api_id for f in plan.failures} == {"dbx-twin-a", "dbx-twin-b", "dbx-blocked"}
    # offered in any order, the plan is the same (its checksum must not depend on the threads' timing)
    again = Planner("svc", listed, claims, early=False)
    for d in (new, twin_a, blocked, changed, twin_b):
        assert again.offer(d, lambda: listed) is None  # early=False: nothing is decided before the plan
    assert again.complete(listed, workspaces=["w1"]).to_dict()["failures"] == plan.to_dict()["failures"]
