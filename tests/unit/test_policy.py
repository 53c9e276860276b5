"""Policy templates: rendering, XML checks, named-value references, canonical comparison."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from apimsync.errors import PolicyError
from apimsync.policy import canonical_policy, load_template, named_value_refs, render_policy


def test_named_value_template_sets_the_authorization_header() -> None:
    text, path = load_template("named-value-auth")
    assert path.name == "named-value-auth.xml"
    xml = render_policy(text, {"named_value": "dbx-token"})
    root = ET.fromstring(xml)
    header = root.find("./inbound/set-header")
    assert header is not None and header.get("name") == "Authorization"
    assert header.get("exists-action") == "override"
    assert header.findtext("value") == "Bearer {{dbx-token}}"
    assert named_value_refs(xml) == {"dbx-token"}
    assert "<!--" not in xml


def test_managed_identity_template_needs_no_named_value() -> None:
    xml = render_policy(load_template("managed-identity-auth")[0], {})
    element = ET.fromstring(xml).find("./inbound/authentication-managed-identity")
    assert element is not None
    assert element.get("resource") == "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d"
    assert named_value_refs(xml) == set()


def test_values_are_xml_escaped_and_apim_braces_pass_through() -> None:
    xml = render_policy("<policies><inbound><set-header name='x'><value>${v} {{nv}}</value></set-header>"
                        "</inbound></policies>", {"v": '<a & "b">'})
    assert ET.fromstring(xml).findtext("./inbound/set-header/value") == '<a & "b"> {{nv}}'


def test_missing_variable_and_bad_xml_are_policy_errors() -> None:
    with pytest.raises(PolicyError, match=r"my\.xml: unknown variable \$\{who\}"):
        render_policy("<policies>${who}</policies>", {}, origin="my.xml")
    with pytest.raises(PolicyError, match=r"not well-formed XML \(line 1"):
        render_policy("<policies><inbound></policies>", {})
    with pytest.raises(PolicyError, match="root element must be <policies>"):
        render_policy("<inbound/>", {})
    with pytest.raises(PolicyError, match="policy template 'nope' not found"):
        load_template("nope")


def test_user_template_by_path(tmp_path: Path) -> None:
    own = tmp_path / "mine.xml"
    own.write_text("<policies><inbound><base /><rate-limit calls='${calls}' renewal-period='60' /></inbound>"
                   "</policies>")
    xml = render_policy(load_template(str(own))[0], {"calls": "10"})
    assert ET.fromstring(xml).find("./inbound/rate-limit").get("calls") == "10"  # type: ignore[union-attr]


def test_canonical_form_ignores_apim_reserialisation_but_not_content() -> None:
    xml = render_policy(load_template("named-value-auth")[0], {"named_value": "t"})
    apim_style = xml.replace("\n", "\r\n").replace("  ", "\t").replace(' name="Authorization" exists-action',
                                                                        ' name="Authorization"  exists-action')
    assert canonical_policy(apim_style) == canonical_policy(xml)
    assert canonical_policy(xml.replace("{{t}}", "{{u}}")) != canonical_policy(xml)


@pytest.mark.parametrize("name", ["x{{other-secret}}", "y{{missing}}", "{{ spaced }}", "a}}{{b", "x{", "@(1)",
                                  " @{return 1;}", "@(context.Subscription.Key)"])
def test_a_value_that_would_be_code_is_refused(name: str) -> None:
    """APIM reads {{name}} and a leading @ after the XML is parsed, where a character reference (&#123;, &#64;) is a
    brace or an at sign again: such a value is refused, never escaped into the policy."""
    template = ("<policies><inbound><set-header name='x'><value>${endpoint} {{nv}}</value></set-header></inbound>"
                "</policies>")
    with pytest.raises(PolicyError, match="would be code in the policy"):
        render_policy(template, {"endpoint": name})


def test_a_value_with_an_at_sign_inside_is_data() -> None:
    xml = render_policy("<policies><inbound><set-header name='x'><value>${v}</value></set-header></inbound>"
                        "</policies>", {"v": "user@example.com"})
    assert ET.fromstring(xml).findtext("./inbound/set-header/value") == "user@example.com"


@pytest.mark.parametrize("quote", ["'", '"'])
def test_a_value_cannot_inject_an_attribute(quote: str) -> None:
    template = (f"<policies><inbound><rewrite-uri template={quote}/x/${{endpoint}}{quote} /></inbound>"
                "</policies>")
    evil = f"a{quote} copy-unmatched-params={quote}false"
    element = ET.fromstring(render_policy(template, {"endpoint": evil})).find("./inbound/rewrite-uri")
    assert element is not None and element.attrib == {"template": f"/x/{evil}"}


@pytest.mark.parametrize("template", [
    "<policies><inbound><base /></inbound></policies>",
    "<policies>\r\n  <inbound>\r\n    <base />\r\n  </inbound>\r\n</policies>",
    "<policies><inbound /></policies>",
    "<policies><inbound id='x'><set-header name='a' exists-action='override'><value>b</value></set-header>"
    "</inbound></policies>",
    "<policies ><outbound /></policies>",
])
def test_optional_policies_go_first_in_one_inbound_section(template: str) -> None:
    import xml.etree.ElementTree as ET

    from apimsync.optional_policies import add_inbound

    xml = add_inbound(template, ["<validate-content max-size='1' />"])
    root = ET.fromstring(xml)
    inbound = root.findall("inbound")
    assert len(inbound) == 1
    tags = [el.tag for el in inbound[0]]
    assert tags.index("validate-content") == (1 if tags[0] == "base" else 0)


def test_optional_policies_refuse_a_policy_without_a_policies_element() -> None:
    from apimsync.optional_policies import add_inbound

    with pytest.raises(PolicyError, match="no <policies> element"):
        add_inbound("<other />", ["<x />"])
