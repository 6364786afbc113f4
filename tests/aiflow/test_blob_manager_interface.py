"""AIFlow's tests of the blob manager interface, ported to fsblob.

Ported from flink-extended/ai-flow (Apache License 2.0):
``ai_flow/test/plugin_interface/test_blob_manager.py`` (0.3 line) and
``tests/blob_manager/test_blob_manager_interface.py`` (master). Their scenarios and
assertions are kept; only the class paths change. The tests after them check the
rest of both generations' interface (``BlobConfig``, ``BlobManagerConfig``, the
factory's call forms, what the base class gives a plugin), read from AIFlow's source.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import fsblob
from fsblob import BlobConfig, BlobConfigError, BlobManager, BlobManagerConfig, BlobManagerFactory

MOCK_CLASS = f"{__name__}.MockBlockManager"


class MockBlockManager(BlobManager):
    """A user's own manager, written for AIFlow (the class name is AIFlow's)."""

    def __init__(self, config):
        super().__init__(config)

    def upload(self, local_file_path: str) -> str:
        return 'upload'

    def download(self, remote_file_path: str, local_dir: str) -> str:
        return 'download'


# -- ported: 0.3 ai_flow/test/plugin_interface/test_blob_manager.py -------------------

def test_blob_manager_factory_0_3() -> None:
    config = {
        'blob_manager_class': MOCK_CLASS,
        'blob_manager_config': {
            'root_directory': '/tmp'
        }
    }
    blob_config = BlobConfig(config)
    blob_manager = BlobManagerFactory.create_blob_manager(blob_config.blob_manager_class(),
                                                          blob_config.blob_manager_config())
    assert blob_manager.upload('') == 'upload'
    assert blob_manager.download('', '') == 'download'


# -- ported: master tests/blob_manager/test_blob_manager_interface.py -----------------

def test_blob_manager_factory_master() -> None:
    config = {
        'blob_manager_class': MOCK_CLASS,
        'blob_manager_config': {
            'root_directory': '/tmp/ai-flow'
        }
    }
    blob_manager = BlobManagerFactory.create_blob_manager(BlobManagerConfig(config))
    assert blob_manager.upload('') == 'upload'
    assert blob_manager.download('', '') == 'download'


def test_config_master() -> None:
    config = BlobManagerConfig({
        'blob_manager_class': 'fsblob.LocalBlobManager',
        'blob_manager_config': {
            'root_directory': '/tmp/ai-flow'
        }
    })
    assert config.get_class() == 'fsblob.LocalBlobManager'
    assert config.get_customized_config() == {'root_directory': '/tmp/ai-flow'}


# -- the rest of AIFlow's interface ---------------------------------------------------

def test_a_plugin_gets_config_root_dir_and_log_from_the_base() -> None:
    config = {'root_directory': '/data/artifacts', 'team': 'vision'}
    manager = MockBlockManager(config)
    assert manager.config is config
    assert manager.root_dir == '/data/artifacts'
    assert isinstance(manager.log, logging.Logger)
    assert manager.log.name == f"{__name__}.MockBlockManager"
    assert MockBlockManager({}).root_dir is None


def test_fsblob_managers_keep_root_dir_as_their_root_url(tmp_path: Path) -> None:
    config = {'root_directory': str(tmp_path / 'store')}
    manager = fsblob.LocalBlobManager(config)
    assert manager.root_dir == manager.root_url == str(tmp_path / 'store')
    assert manager.config is config and manager.log.name == "fsblob.manager.LocalBlobManager"
    memory = fsblob.FsspecBlobManager({'root_directory': 'memory://plugin-root'})
    assert memory.root_dir == "memory:///plugin-root"


def test_a_plugin_missing_a_method_is_refused_as_in_aiflow() -> None:
    class UploadOnly(BlobManager):
        def upload(self, local_file_path: str) -> str:
            return 'upload'

    with pytest.raises(TypeError, match="abstract"):
        UploadOnly({})  # type: ignore[abstract]


def test_blob_config_is_a_dict_as_in_aiflow_0_3() -> None:
    section = {'blob_manager_class': 'fsblob.LocalBlobManager',
               'blob_manager_config': {'root_directory': '/r'}, 'other': 1}
    blob_config = BlobConfig(section)
    assert isinstance(blob_config, dict)
    assert blob_config['blob_manager_config'] == {'root_directory': '/r'}
    assert dict(blob_config) == {'blob_manager_class': 'fsblob.LocalBlobManager',
                                 'blob_manager_config': {'root_directory': '/r'}}
    blob_config.blob_manager_config()['root_directory'] = '/s'  # AIFlow handed out the dict itself
    assert blob_config['blob_manager_config'] == {'root_directory': '/s'}
    blob_config.set_blob_manager_class('fsblob.S3BlobManager')
    assert blob_config['blob_manager_class'] == blob_config.blob_manager_class() == 'fsblob.S3BlobManager'
    assert BlobConfig({'blob_manager_class': 'x.Y'})['blob_manager_config'] == {}
    assert BlobConfig({'blob_manager_class': 'x.Y', 'blob_manager_config': None}).blob_manager_config() == {}


@pytest.mark.parametrize("make, none_words", [
    (BlobConfig, "The `blob` option is not configured in the project.yaml option"),
    (BlobManagerConfig, "The blob manager option is not configured"),
])
def test_a_bad_section_is_refused_at_construction_in_aiflow_s_words(make: type, none_words: str) -> None:
    with pytest.raises(BlobConfigError, match=none_words):
        make(None)
    for section in ({}, {'blob_manager_config': {'root_directory': '/r'}}, {'blob_manager_class': None}):
        with pytest.raises(BlobConfigError, match="The `blob_manager_class` option of blob config is not configured"):
            make(section)
    with pytest.raises(BlobConfigError, match="blob_manager_config must be a mapping"):
        make({'blob_manager_class': 'x.Y', 'blob_manager_config': 'root_directory=/r'})
    with pytest.raises(BlobConfigError, match="blob_manager_class must be a class path"):
        make({'blob_manager_class': ['x.Y']})


def test_master_config_without_a_customized_config() -> None:
    config = BlobManagerConfig({'blob_manager_class': 'fsblob.LocalBlobManager'})
    assert config.get_customized_config() is None  # as AIFlow's
    with pytest.raises(BlobConfigError, match="`root_directory` option of blob manager config is not configured"):
        BlobManagerFactory.create_blob_manager(config)


def test_the_factory_takes_both_generations_call_forms(tmp_path: Path) -> None:
    section = {'blob_manager_class': 'fsblob.LocalBlobManager',
               'blob_manager_config': {'root_directory': str(tmp_path / 'store')}}
    made = [
        BlobManagerFactory.create_blob_manager(section['blob_manager_class'], section['blob_manager_config']),
        BlobManagerFactory.create_blob_manager(class_name=section['blob_manager_class'],
                                               config=section['blob_manager_config']),
        BlobManagerFactory.create_blob_manager(BlobManagerConfig(section)),
        BlobManagerFactory.create_blob_manager(config=BlobManagerConfig(section)),
        BlobManagerFactory.create_blob_manager(section),  # AIFlow master's default: a plain dict
        BlobManagerFactory.create_blob_manager(BlobConfig(section)),
    ]
    for manager in made:
        assert type(manager) is fsblob.LocalBlobManager
        assert manager.root_url == str(tmp_path / 'store')
    with pytest.raises(BlobConfigError, match="The blob manager option is not configured"):
        BlobManagerFactory.create_blob_manager(None)
    with pytest.raises(BlobConfigError, match="a class path and its blob_manager_config, or one blob section"):
        BlobManagerFactory.create_blob_manager(BlobManagerConfig(section), section['blob_manager_config'])


def test_reprs_of_both_configs_hide_secrets() -> None:
    section = {'blob_manager_class': 'fsblob.S3BlobManager',
               'blob_manager_config': {'bucket_name': 'b', 'secret_access_key': 'VERYSECRET1'}}
    for config in (BlobConfig(section), BlobManagerConfig(section)):
        for text in (repr(config), str(config), f"{config}"):
            assert 'VERYSECRET1' not in text and 'fsblob.S3BlobManager' in text
