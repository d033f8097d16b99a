import os
from glob import glob

from setuptools import find_packages, setup

package_name = 'pi07_bringup'


def checkpoint_files():
    """The shipped checkpoints, installed to share/pi07_bringup/checkpoints/<profile>/<model>/."""
    entries = {}
    for path in sorted(glob('checkpoints/*/*/*')):
        entries.setdefault(os.path.dirname(path), []).append(path)
    return [(os.path.join('share', package_name, folder), files) for folder, files in entries.items()]


setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/config', glob('config/*.yaml')),
        ('share/' + package_name + '/launch', glob('launch/*.launch.py')),
        *checkpoint_files(),
    ],
    install_requires=['setuptools'],
    zip_safe=False,
    maintainer='pi07 developers',
    maintainer_email='pi07@example.com',
    description='Bringup of pi07: per-embodiment profiles (config/), launch files (launch/), the ',
    license='Apache-2.0',
    extras_require={'test': ['pytest']},
    entry_points={
        'console_scripts': [
            'run = pi07_bringup.runner:main',
            'evaluate = pi07_bringup.evaluate:main',
        ],
    },
)
