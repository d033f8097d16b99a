
from setuptools import find_packages, setup

package_name = 'pi07_sim'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    install_requires=['setuptools'],
    zip_safe=False,
    maintainer='pi07 developers',
    maintainer_email='pi07@example.com',
    description='The embedded simulated robot of pi07: MuJoCo tabletop, two embodiments, experts, bags',
    license='Apache-2.0',
    extras_require={'test': ['pytest']},
    entry_points={
        'console_scripts': [
            'sim = pi07_sim.sim_node:main',
            'expert = pi07_sim.expert_node:main',
            'record = pi07_sim.bag.recorder:main',
            'play = pi07_sim.bag.player:main',
            'collect = pi07_sim.collect:main',
        ],
    },
)
