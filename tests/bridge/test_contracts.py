"""Contracts: every declared shape is a valid schema, and validation says where and why."""

from __future__ import annotations

import jsonschema
import pytest

from psdriver.bridge import contracts

SCRIPTS = contracts.script_names()
#: Keywords fastjsonschema (draft 7) understands the same way draft 2020-12 does.
DRAFT7_KEYWORDS = {
    '$schema', '$comment', 'title', 'description', 'type', 'enum', 'const', 'properties',
    'required', 'additionalProperties', 'items', 'minItems', 'maxItems', 'uniqueItems',
    'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf', 'minLength',
    'maxLength', 'pattern', 'format', 'anyOf', 'allOf', 'oneOf', 'not', 'if', 'then', 'else',
    'minProperties', 'maxProperties', 'propertyNames', 'patternProperties', 'default',
    'examples', 'contentEncoding', 'contentMediaType',
}


def _keywords(schema, found=None):
    """Every keyword used anywhere in ``schema`` (property names are not keywords)."""
    found = set() if found is None else found
    if isinstance(schema, dict):
        for key, value in schema.items():
            found.add(key)
            if key in ('properties', 'patternProperties'):
                for sub in value.values():
                    _keywords(sub, found)
            elif key in ('enum', 'const', 'required', 'examples', 'default'):
                continue
            else:
                _keywords(value, found)
    elif isinstance(schema, list):
        for item in schema:
            _keywords(item, found)
    return found


@pytest.mark.parametrize('name', SCRIPTS)
def test_declared_shapes_are_valid_schemas_of_the_draft_they_name(name):
    contract = contracts.load_contract(name)
    for schema in filter(None, (contract.result_schema, contract.spec_schema)):
        assert schema['$schema'] == 'https://json-schema.org/draft/2020-12/schema'
        jsonschema.Draft202012Validator.check_schema(schema)
        # What the compiled validator implements reads these the same way.
        assert _keywords(schema) <= DRAFT7_KEYWORDS, name


WITH_SPEC = [n for n in SCRIPTS if contracts.load_contract(n).spec_schema is not None]


@pytest.mark.parametrize('name', WITH_SPEC)
def test_compiled_and_reference_validators_agree_on_the_examples(name):
    # The reference validator (jsonschema, 2020-12) and the compiled one must
    # accept and refuse the same values.
    contract = contracts.load_contract(name)
    reference = jsonschema.Draft202012Validator(contract.spec_schema)
    for example in contract.examples:
        spec = example[contract.spec_parameter]
        contract.validate_spec(spec)
        assert reference.is_valid(spec)
        broken = dict(spec, vcpus='four') if isinstance(spec, dict) else [*spec, 'not a NIC']
        assert not reference.is_valid(broken)
        with pytest.raises(contracts.ShapeError):
            contract.validate_spec(broken)


def test_shape_error_names_the_place_and_the_rule_but_not_the_value():
    contract = contracts.load_contract('Get-InstanceSummary')
    with pytest.raises(contracts.ShapeError) as raised:
        contract.validate({'vms': [{'name': 'x-secret-value'}]})
    error = raised.value
    assert error.path[:2] == ('vms', '0')
    assert error.rule in ('required', 'type', 'additionalProperties')
    assert 'x-secret-value' not in str(error)
    assert error.where('result').startswith('result')


def test_shape_error_on_a_nested_type():
    contract = contracts.load_contract('Get-HostInfo')
    good = {'hostname': 'hv01'}
    with pytest.raises(contracts.ShapeError) as raised:
        contract.validate(good)
    assert raised.value.where() == '<root>' and raised.value.rule == 'required'
