
from setuptools import find_packages, setup

package_name = 'pi07_policy'

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
    description='The pi07 VLA (vision-language backbone + flow-matching action expert, FAST token',
    license='Apache-2.0',
    extras_require={'test': ['pytest']},
    entry_points={
        'console_scripts': [
            'chunk_executor = pi07_policy.nodes.chunk_executor:main',
            'action_expert = pi07_policy.nodes.action_expert:main',
            'high_level_policy = pi07_policy.nodes.high_level_policy:main',
            'convert = pi07_policy.data.convert:main',
            'train = pi07_policy.train_cli:main',
            'evaluate_open_loop = pi07_policy.evaluate_open_loop:main',
            'evaluate_delay = pi07_policy.evaluate_delay:main',
        ],
    },
)
