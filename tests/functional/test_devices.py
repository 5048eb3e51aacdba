"""Device and flavor features through nova's API: what psdriver refuses and what it builds."""

from __future__ import annotations

import pytest

from tests.functional import harness

pytestmark = pytest.mark.functional


class RemoteFXTest(harness.PsDriverTestBase):

    def test_a_remotefx_flavor_fails_the_build_and_says_why(self):
        flavor = self._flavor()
        # Nova 34 no longer knows the Hyper-V extra specs: before microversion 2.86 the API
        # stores them unchecked, as a cloud upgraded from compute-hyperv still has them.
        self.api.microversion = '2.85'
        self.api.post_extra_spec(flavor, {'extra_specs': {'os:resolution': '1920x1200',
                                                          'os:monitors': '2'}})
        self.api.microversion = 'latest'
        server = self.boot(flavor, expected_state='ERROR')
        self.assertIn('RemoteFX', server['fault']['message'])
        self.assertIsNone(self.host_vm(server))
